"""2-D figures drawn on matplotlib's Agg canvas without pyplot, so no library call switches the process's backend."""

from __future__ import annotations


def agg_axes(figsize: tuple[float, float], dpi: int = 120):
    """A figure on its own Agg canvas, and its one axes.

    Where Debian's ``mpl_toolkits`` (installed with QGIS) sits beside a newer pip matplotlib, importing matplotlib's
    projections warns "Unable to import Axes3D". These plots are 2-D and never need it, so that one warning is
    silenced here, for this call only.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unable to import Axes3D")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize, dpi=dpi)
        FigureCanvasAgg(fig)
        return fig, fig.add_subplot()
