"""What tests and bench/ share: real servers (servers), the Flux stand-in (flux_standin), Grafana's
macro expansion (grafana_macros), how a test drives the loader (harness), synthetic readings and the
means expected of them (readings), and reading the archive back (archive)."""
