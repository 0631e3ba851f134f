"""Install-time helpers, run as scripts by install.sh; bench/ imports demo_seed from here."""
