"""A step chart of servers recovered over time, as a plain SVG (no plotting library)."""

from xml.sax.saxutils import escape

COLOURS = {"a": "#1f77b4", "b": "#d62728", "c": "#2ca02c", "d": "#9467bd", "e": "#8c564b", "a-serial": "#ff7f0e", "c-rack": "#2ca02c"}
WIDTH, HEIGHT = 720, 400
LEFT, RIGHT, TOP, BOTTOM = 60, 180, 40, 50


def _nice_step(span, ticks=8):
    raw = span / ticks
    for step in (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600):
        if step >= raw:
            return step
    return 1200


def step_chart(title, series, path):
    """series: [(key, label, [seconds at which each server was recovered], end seconds)]."""
    x_max = max([line[3] for line in series] + [t for line in series for t in line[2]] + [1.0])
    y_max = max([len(line[2]) for line in series] + [1])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(value):
        return LEFT + plot_w * value / x_max

    def y(value):
        return TOP + plot_h * (1 - value / y_max)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="14">{escape(title)}</text>',
    ]
    step = _nice_step(x_max)
    tick = 0
    while tick <= x_max:
        out.append(f'<line x1="{x(tick):.1f}" y1="{TOP}" x2="{x(tick):.1f}" y2="{TOP + plot_h}" stroke="#eee"/>')
        out.append(f'<text x="{x(tick):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{tick}</text>')
        tick += step
    y_step = max(1, _nice_step(y_max, 5))
    for value in range(0, y_max + 1, y_step):
        out.append(f'<line x1="{LEFT}" y1="{y(value):.1f}" x2="{LEFT + plot_w}" y2="{y(value):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>')
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 12}" text-anchor="middle">seconds since the contender started</text>')
    out.append(f'<text x="16" y="{TOP + plot_h / 2}" text-anchor="middle" transform="rotate(-90 16 {TOP + plot_h / 2})">servers recovered</text>')
    for index, (key, label, times, end) in enumerate(series):
        colour = COLOURS.get(key, "#555")
        points, count = [(x(0), y(0))], 0
        for moment in sorted(times):
            points.append((x(moment), y(count)))
            count += 1
            points.append((x(moment), y(count)))
        points.append((x(end), y(count)))
        path_d = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        out.append(f'<polyline points="{path_d}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<circle cx="{x(end):.1f}" cy="{y(count):.1f}" r="4" fill="{colour}"/>')
        legend_y = TOP + 16 + index * 34
        out.append(f'<line x1="{LEFT + plot_w + 12}" y1="{legend_y}" x2="{LEFT + plot_w + 32}" y2="{legend_y}" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{LEFT + plot_w + 36}" y="{legend_y + 4}">{escape(label)}</text>')
        out.append(f'<text x="{LEFT + plot_w + 36}" y="{legend_y + 18}" fill="#666">done at {end:.0f} s</text>')
    out.append('</svg>')
    with open(path, "w") as handle:
        handle.write("\n".join(out) + "\n")
