"""Shared report infrastructure: self-contained HTML pages, embedded figures, metric summaries.

A report is one HTML file rendered from a jinja2 template in ``radsurv/evaluation/templates/``
(templates extend ``base.html.j2``, which shows ``title``, ``warnings``, the ``content`` block and
a settings + versions block). Figures are embedded as base64 PNG data URIs, so the file can be
mailed to a colleague and opened offline.

Example
-------
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> import matplotlib.pyplot as plt
>>> fig, ax = plt.subplots()
>>> uri = figure_to_data_uri(fig)              # 'data:image/png;base64,...'
>>> # render_report("survival.html.j2", {"title": "...", "figures": [...]}, out / "report.html")
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from radsurv.errors import ConfigError

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).with_name("templates")

#: Packages whose versions every report lists.
DEFAULT_VERSION_PACKAGES: tuple[str, ...] = (
    "radsurv",
    "numpy",
    "pandas",
    "scikit-learn",
    "scikit-survival",
    "lifelines",
    "xgboost",
    "pyradiomics",
    "matplotlib",
)


def render_report(
    template_name: str,
    context: Mapping[str, Any],
    out_path: str | Path,
    *,
    template_dirs: Sequence[str | Path] = (),
) -> Path:
    """Render a jinja2 template to a self-contained HTML file.

    Parameters
    ----------
    template_name
        File name of a template in ``radsurv/evaluation/templates/`` (or in ``template_dirs``,
        searched first).
    context
        Template variables. ``versions`` (from :func:`package_versions`) and ``generated``
        (UTC timestamp) are filled in when absent.
    out_path
        Where to write the HTML; parent folders are created.
    template_dirs
        Extra template folders, searched before the package's own.

    Returns
    -------
    pathlib.Path
        ``out_path``.
    """
    import jinja2

    dirs = [str(d) for d in template_dirs] + [str(TEMPLATE_DIR)]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(dirs),
        autoescape=jinja2.select_autoescape(["html", "j2", "html.j2"]),
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = format_number
    try:
        template = env.get_template(template_name)
    except jinja2.TemplateNotFound as exc:
        raise ConfigError(
            f"report template {template_name!r} not found in {dirs}; "
            "templates live in radsurv/evaluation/templates/"
        ) from exc
    ctx = dict(context)
    ctx.setdefault("versions", package_versions())
    ctx.setdefault("generated", _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"))
    html = template.render(**ctx)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    log.info("wrote report %s (%.0f kB)", out, len(html) / 1024)
    return out


def figure_to_data_uri(fig: Any, *, dpi: int = 110, close: bool = True) -> str:
    """Encode a matplotlib figure as a ``data:image/png;base64,...`` URI (for ``<img src>``).

    Parameters
    ----------
    fig
        A :class:`matplotlib.figure.Figure` (use the Agg backend on headless machines).
    dpi
        Resolution of the PNG.
    close
        Close the figure afterwards to free memory.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def new_figure(figsize: tuple[float, float] = (6.0, 4.0)) -> tuple[Any, Any]:
    """A (figure, axes) pair on the non-interactive Agg canvas, safe without a display."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _decimals(value: float, digits: int) -> int:
    """Decimals that show ``digits`` significant digits of ``value`` (0 from 10**digits up)."""
    if value == 0 or not math.isfinite(value):
        return digits
    return max(0, digits - 1 - math.floor(math.log10(abs(value))))


def format_number(value: Any, digits: int = 3, decimals: int | None = None) -> str:
    """Format a number for a table with ``digits`` significant digits.

    ``n/a`` for None/NaN, ints unchanged, large values as plain integers (100123, never
    1e+05), tiny ones in scientific notation. ``decimals`` forces the decimals (to align a
    spread or a CI with its estimate).

    Examples
    --------
    >>> format_number(0.62549), format_number(100123.4), format_number(0.0345), format_number(0)
    ('0.625', '100123', '0.0345', '0')
    """
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(f):
        return "n/a"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    if decimals is None:
        if f == 0:
            return "0"
        if abs(f) < 1e-4:
            return f"{f:.{max(digits - 1, 0)}e}"
        decimals = _decimals(f, digits)
    return f"{f:.{decimals}f}"


def is_float_noise(spread: float, reference: float) -> bool:
    """Whether a spread is floating-point noise of a constant (e.g. 6.8e-17 around 0.459)."""
    return math.isfinite(spread) and abs(spread) <= 1e-12 * max(1.0, abs(reference))


def format_estimate(
    mean: Any, spread: Any = None, ci: Sequence[Any] | None = None, digits: int = 3
) -> str:
    """``mean ± spread [lo, hi]`` with ``digits`` significant digits on the mean, and the
    spread and CI at the mean's decimals; a spread that is float noise of a constant shows as
    0, one below the mean's last digit as ``<0.001``.

    Examples
    --------
    >>> format_estimate(0.459, 6.8e-17, [0.459, 0.459])
    '0.459 ± 0 [0.459, 0.459]'
    >>> format_estimate(100123.4, 1221.3, [77924.1, 100456.0])
    '100123 ± 1221 [77924, 100456]'
    """
    m = _as_float(mean)
    text = format_number(m, digits)
    if not math.isfinite(m):
        return text
    dec = _decimals(m, digits) if m != 0 else digits
    if spread is not None:
        sd = _as_float(spread)
        if math.isnan(sd):
            text += " ± n/a"
        elif is_float_noise(sd, m):
            text += " ± 0"
        elif round(sd, dec) == 0:
            text += f" ± <{10.0**-dec:.{dec}f}"
        else:
            text += f" ± {format_number(sd, digits, decimals=dec)}"
    if ci is not None:
        lo, hi = (_as_float(v) for v in ci)
        low, high = (format_number(v, digits, decimals=dec) for v in (lo, hi))
        text += f" [{low}, {high}]"
    return text


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def summarise_metric(
    values: Iterable[float],
    rng: np.random.Generator | int | None = 0,
    *,
    n_boot: int = 2000,
) -> dict[str, Any]:
    """Mean, standard deviation and bootstrap 95 % CI of the mean of a set of metric values.

    NaN values (folds where the metric is undefined) are left out and counted.

    Parameters
    ----------
    values
        Metric values, e.g. one per fold or per repeat.
    rng
        A numpy Generator or seed; the CI is deterministic for a fixed seed.
    n_boot
        Number of bootstrap resamples of the values.

    Returns
    -------
    dict
        ``{"mean", "sd", "ci95": [lo, hi], "n", "n_undefined"}``; NaN entries (``None`` in JSON)
        when fewer than one (mean) or two (sd, CI) values are defined.
    """
    arr = np.asarray(list(values), dtype=float)
    ok = arr[~np.isnan(arr)]
    out: dict[str, Any] = {
        "mean": float(ok.mean()) if ok.size else math.nan,
        "sd": float(ok.std(ddof=1)) if ok.size > 1 else math.nan,
        "ci95": [math.nan, math.nan],
        "n": int(ok.size),
        "n_undefined": int(arr.size - ok.size),
    }
    if ok.size > 1:
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        means = ok[gen.integers(0, ok.size, size=(n_boot, ok.size))].mean(axis=1)
        lo, hi = np.percentile(means, [2.5, 97.5])
        out["ci95"] = [float(lo), float(hi)]
    return out


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return _clean_float(float(obj))
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return _to_jsonable(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (_dt.date, _dt.datetime)):
        return obj.isoformat()
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def _clean_float(f: float) -> float | None:
    return None if (math.isnan(f) or math.isinf(f)) else f


def _to_jsonable(obj: Any) -> Any:
    """Recursively replace NaN/inf by None and numpy scalars by Python ones (strict JSON)."""
    if isinstance(obj, Mapping):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return _clean_float(obj)
    if isinstance(obj, (np.generic, np.ndarray, Path, _dt.date)):
        return _json_default(obj)
    return obj


def write_metrics_json(obj: Mapping[str, Any], path: str | Path) -> Path:
    """Write metrics as strict JSON (NaN/inf -> null, numpy types -> Python), sorted keys kept.

    Parameters
    ----------
    obj
        Nested dict of metrics.
    path
        Output file; parent folders are created.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_to_jsonable(obj), indent=2, allow_nan=False, default=_json_default)
    out.write_text(text + "\n", encoding="utf-8")
    return out


def package_versions(packages: Sequence[str] = DEFAULT_VERSION_PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages`` (``not installed`` where absent), plus Python's."""
    import platform
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def dataframe_rows(df: Any, digits: int = 3) -> dict[str, Any]:
    """A DataFrame as ``{"columns": [...], "rows": [[...], ...]}`` of formatted strings.

    Templates render it with a simple loop; the index becomes the first column.
    """
    columns = [df.index.name or ""] + [str(c) for c in df.columns]
    rows = [
        [str(idx)] + [format_number(v, digits) for v in row]
        for idx, row in zip(df.index, df.itertuples(index=False), strict=True)
    ]
    return {"columns": columns, "rows": rows}


def comparison_rows(comparisons: Mapping[str, Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Rows of the paired model-vs-baseline table (``_comparisons.html.j2``)."""
    rows = []
    for name, c in (comparisons or {}).items():
        lo, hi = c.get("ci95", [math.nan, math.nan])
        rows.append(
            {
                "name": name,
                "difference": format_number(c.get("difference")),
                "ci": f"[{format_number(lo)}, {format_number(hi)}]",
                "p": format_number(c.get("p_value")),
                "n": c.get("n_folds"),
            }
        )
    return rows


def comparison_context(comparisons: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    """Template variables ``comparisons``, ``comparisons_reference``, ``comparisons_metric``."""
    first = next(iter((comparisons or {}).values()), {})
    return {
        "comparisons": comparison_rows(comparisons),
        "comparisons_reference": first.get("reference", ""),
        "comparisons_metric": first.get("metric", ""),
    }
