"""Small server-rendered SVG charts: no front-end library to fetch, nothing to copy into the repository."""

from __future__ import annotations

from html import escape

WIDTH, HEIGHT, PAD = 560, 160, 28


def bar_chart(title: str, labels: list[str], values: list[float], unit: str = "") -> str:
    top = max(values) if values and max(values) > 0 else 1.0
    step = (WIDTH - 2 * PAD) / max(1, len(values))
    bars = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        height = (HEIGHT - 2 * PAD) * value / top
        x = PAD + i * step
        y = HEIGHT - PAD - height
        bars.append(
            f'<rect x="{x + 2:.1f}" y="{y:.1f}" width="{max(1.0, step - 4):.1f}" height="{height:.1f}" '
            f'class="bar"><title>{escape(label)}: {value:g}{escape(unit)}</title></rect>'
        )
        if i % max(1, len(values) // 7) == 0:
            bars.append(f'<text x="{x + step / 2:.1f}" y="{HEIGHT - 8}" class="tick">{escape(label)}</text>')
    return (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" class="chart">'
        f'<text x="{PAD}" y="16" class="chart-title">{escape(title)} (max {top:g}{escape(unit)})</text>'
        + "".join(bars)
        + f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" class="axis"/></svg>'
    )


def line_chart(title: str, labels: list[str], series: dict[str, list[float]], unit: str = "") -> str:
    every = [v for values in series.values() for v in values]
    top = max(every) if every and max(every) > 0 else 1.0
    step = (WIDTH - 2 * PAD) / max(1, len(labels) - 1)
    lines = []
    for index, (name, values) in enumerate(series.items()):
        points = " ".join(
            f"{PAD + i * step:.1f},{HEIGHT - PAD - (HEIGHT - 2 * PAD) * v / top:.1f}"
            for i, v in enumerate(values)
        )
        lines.append(
            f'<polyline points="{points}" class="line line-{index}"><title>{escape(name)}</title></polyline>'
        )
        legend = f'x="{WIDTH - PAD - 90}" y="{16 + 12 * index}" class="legend line-{index}"'
        lines.append(f"<text {legend}>{escape(name)}</text>")
    ticks = "".join(
        f'<text x="{PAD + i * step:.1f}" y="{HEIGHT - 8}" class="tick">{escape(label)}</text>'
        for i, label in enumerate(labels)
        if i % max(1, len(labels) // 7) == 0
    )
    return (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" class="chart">'
        f'<text x="{PAD}" y="16" class="chart-title">{escape(title)} (max {top:g}{escape(unit)})</text>'
        + "".join(lines)
        + ticks
        + f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" class="axis"/></svg>'
    )
