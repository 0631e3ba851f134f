"""influx-archive: keep InfluxDB data past its retention as window means in PostgreSQL."""

__version__ = "0.1.0"
