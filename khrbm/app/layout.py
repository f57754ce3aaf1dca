"""Where things go on the screen (UX.md, "Layout"): the sidebar's sections, grouped by when a setting
applies, and the main area; in the Bootstrap template of a served page, or side by side in a notebook."""
from __future__ import annotations

import panel as pn

from . import controls, library

SIDEBAR_WIDTH = 350
CARD_CSS = """
:host { border-radius: 6px; }
.card-header { padding: 1px 6px !important; min-height: 0 !important; }
.card-button { margin: 0 4px 0 0 !important; padding: 0 !important; }
"""
CARD_TITLE_CSS = ":host { text-align: left; } .khrbm-card-title { font-size: 13px; font-weight: 700; color: #1f3b57; }"


def _section(title, *objs, collapsed=False, css=""):
    # one Column inside: the Bootstrap design gives every direct child of a Card a 10 px margin
    body = pn.Column(*objs, margin=(2, 0), sizing_mode="stretch_width")
    return pn.Card(body, header=pn.pane.HTML(f"<span class='khrbm-card-title'>{title}</span>", margin=(0, 4),
                                             stylesheets=[CARD_TITLE_CSS]),
                   collapsed=collapsed, sizing_mode="stretch_width", css_classes=["khrbm-card", css],
                   margin=(3, 6), stylesheets=[CARD_CSS], header_background="#eef2f6")


def sidebar(lab) -> list:
    rows = lab.controls.rows

    def group(name, skip=()):
        return [rows[n] for n in controls.group_fields(name) if n not in skip]

    def pair(a, b):
        return pn.Row(rows[a], b if isinstance(b, pn.viewable.Viewable) else rows[b], margin=0)

    kh = _section("KH competition · live", *group("kh", skip=("ell_band", "shuffle_xi")),
                  pn.Row(rows["ell_band"], rows["shuffle_xi"], margin=0), css="khrbm-kh")
    rbm = _section("RBM · live", *group("rbm"), css="khrbm-rbm")
    model = _section("Model · applies on Reset once started", rows["dataset"], rows["task"],
                     pair("n_hidden", "batch_size"), pair("init", "sampler"), pair("seed", lab.reset_hint),
                     css="khrbm-model")
    more = _section("More model settings", *group("more"), collapsed=True, css="khrbm-more")
    diag = _section("Diagnostics · live", *group("diag"), collapsed=True, css="khrbm-diag")
    kept = _section(library.TITLE, lab.library.tabs, collapsed=True, css="khrbm-library")
    lab.library.follow(kept)
    return [pn.Row(lab.preset, lab.copy_link, margin=0), kept,
            pn.Row(lab.start_btn, lab.pause_btn, lab.step_btn, lab.reset_btn, margin=0), lab.seat.sidebar_row(),
            lab.controls.compare_row, kh, rbm, model, more, diag, lab.server_line]


def main(lab) -> pn.Column:
    return pn.Column(lab.seat.main_row(), lab.banner, lab.errorbox, lab.status, lab.library.band,
                     lab.library.viewer, *lab.dashboard.rows(), pn.Row(lab.files.row(), lab.inspect.open_button,
                                                                      margin=0), lab.inspect.view,
                     sizing_mode="stretch_width", margin=0, css_classes=["khrbm-main"])


def page(lab, favicon: str, logo: str) -> pn.template.BootstrapTemplate:
    """A served page (one browser tab)."""
    return pn.template.BootstrapTemplate(
        title="khrbm · Krotov–Hopfield RBM lab", sidebar=sidebar(lab), main=[main(lab)],
        sidebar_width=SIDEBAR_WIDTH, favicon=favicon, logo=logo, header_background="#1f3b57", main_max_width="")


def notebook(lab) -> pn.Row:
    """The lab in a notebook's output: the sidebar beside the main area."""
    return pn.Row(pn.Column(*sidebar(lab), width=SIDEBAR_WIDTH, margin=0), main(lab), margin=0,
                  css_classes=["khrbm-lab"])
