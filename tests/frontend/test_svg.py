from core.svg import csp_safe_svg


def test_styles_become_presentation_attributes():
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg"><defs><style type="text/css">*{stroke-linejoin: round; '
        'stroke-linecap: butt}</style></defs><path d="M0 0" style="fill: #ffffff; stroke-width: 0.8"/></svg>'
    )
    out = csp_safe_svg(svg)
    assert "style" not in out
    assert '<path d="M0 0" fill="#ffffff" stroke-width="0.8"/>' in out
    assert out.startswith('<svg stroke-linejoin="round" stroke-linecap="butt" xmlns=')


def test_a_real_matplotlib_chart_keeps_no_inline_style():
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], color="tab:green")
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    out = csp_safe_svg(buf.getvalue())
    assert "style=" not in out and "<style" not in out
    assert 'stroke="#2ca02c"' in out  # the line keeps its colour
