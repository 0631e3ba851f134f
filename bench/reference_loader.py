# The reference method, copied from the article this project replaces:
#   Mike Hinkle, "Extract, transform & load: InfluxDB Cloud to Local PostgreSQL (Part 2)", 2021-07-12
#   (shared/reference/influxdb-cloud-to-local-postgresql.md), script health_metrics_loader.py.
# Kept as the article writes it, so the benchmark measures that method: query_data_frame(), then
# DataFrame.to_sql(if_exists="append"). Three changes, each marked BENCH: the time range can be
# given by BENCH_START/BENCH_STOP (the article always loads the last full hour), the .env file is
# the one BENCH_ENV names, and one line that no longer runs on pandas 1.5+ is replaced by its
# equivalent. bench/run runs it with the packages a Pi gets from Debian bookworm (pandas 1.5.3,
# SQLAlchemy 1.4.46, psycopg2 2.9.5); with SQLAlchemy 2.1 its postgresql:// URL would mean psycopg 3.

# Filename: health_metrics_loader.py
# Author:   Mike Hinkle
# Purpose:  Extract data from InfluxDB cloud account, sanitize
#           and push to local postgres instance

import os
import pandas as pd
from influxdb_client import InfluxDBClient
from sqlalchemy import create_engine
from dotenv import load_dotenv
from datetime import datetime, timedelta

load_dotenv(os.environ.get("BENCH_ENV", ".env"))  # BENCH: which .env

#
# Load secrets from dotenv file
#
TOKEN = os.getenv("TOKEN")
ORG = os.getenv("ORG")
URL = os.getenv("CONNECTION")
PG_CONNECT = os.getenv("PG_CONNECT")

#
# Create time range to bound query
#
now = datetime.utcnow().strftime("%Y-%m-%dT%H:00:00Z")
last = datetime.utcnow() - timedelta(hours=1)
last_hour = last.strftime("%Y-%m-%dT%H:00:00Z")
now = os.environ.get("BENCH_STOP", now)  # BENCH: a longer range than the last hour
last_hour = os.environ.get("BENCH_START", last_hour)  # BENCH

#
# Instantiate connection object for TSDB
#
client = InfluxDBClient(url=URL, token=TOKEN, org=ORG)
query_api = client.query_api()

#
# Query InfluxDB cloud instance and return in df
#
df_current_sats = query_api.query_data_frame(
    'from(bucket: "pulse_oximeter") '
    "|> range(start: " + last_hour + ", stop: " + now + ") "
    '|> filter(fn: (r) => r._measurement == "spo2") '
    "|> aggregateWindow(every: 5s, fn: mean, createEmpty: false)"
    '|> drop(columns: ["_start","_stop","_measurement","uid"])'
    '|> pivot(rowKey:["_time"], columnKey: ["_field"], valueColumn: "_value")'
)
#
# Close connection object
#
client.__del__()

#
# Try and except to handle case when cloud provider is offline or
# rpi unplugged (away from wifi).
#
# Drop don't care columns, rename time header and set time as index
#
try:
    df_current_sats.drop(labels=["table", "result"], axis=1, inplace=True)
    df_current_sats.rename(columns={"_time": "time"}, inplace=True)
    df_current_sats["time"] = pd.to_datetime(df_current_sats["time"])
    # BENCH: the article's next line, astype("datetime64[us]") of tz-aware times, raises TypeError with
    # pandas 1.5 and later; tz_convert(None) gives the naive UTC times it meant.
    df_current_sats["time"] = df_current_sats["time"].dt.tz_convert(None)
    df_current_sats.set_index("time", inplace=True)

    #
    # Instantiate sqlalchemy connection object
    #
    engine = create_engine(PG_CONNECT)

    #
    # Use pandas to write dataframe to postgres instance
    #
    df_current_sats.to_sql("pox_five_second_mean", engine, if_exists="append")

    #
    # Close sqlalchemy connection object
    #
    engine.dispose()
except KeyError:
    pass
