"""The report as a document model (sections of tables, figures and paragraphs) and its two renderings.

report.html is self-contained: CSS inline, every image a base64 data: URI, no script and no external
resource, so it opens offline. tables.md links the figures by path relative to itself.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agf import __version__
from agf.errors import ReportError
from agf.report.markup import Table, to_html, to_markdown

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d232a;
       max-width: 1180px; margin: 2em auto; padding: 0 1.2em; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #d6dce3; padding-bottom: 0.2em;
       margin-top: 2.2em; }
nav ul { columns: 2; } .notes, .lead { color: #4a5560; font-size: 0.92em; }
h3 { font-size: 1em; margin: 1.6em 0 0.5em; } .scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #d6dce3; padding: 0.25em 0.6em; text-align: left; vertical-align: bottom; }
th { background: #eef2f6; } tbody tr:nth-child(even) { background: #f7f9fb; }
td.num, th.num { text-align: right; } td.num { white-space: nowrap; font-variant-numeric: tabular-nums; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #e3e7ec; }
figcaption { color: #4a5560; font-size: 0.92em; }
footer { margin-top: 3em; color: #8a949e; font-size: 0.85em; }
"""


@dataclass(frozen=True)
class Image:
    """A PNG on disk shown with a caption."""

    path: Path
    caption: str


Block = Table | Image | str


@dataclass(frozen=True)
class Section:
    """A titled part of the report: tables, images and paragraphs (plain strings), in order."""

    anchor: str
    heading: str
    blocks: tuple[Block, ...]


def read_png(path: Path) -> bytes:
    """The bytes of a PNG file; ReportError naming the file when it is missing or not a PNG."""
    if not path.is_file():
        raise ReportError(f"{path}: image not found; rerun the stage that draws it or leave it out of the report")
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise ReportError(f"{path}: not a PNG file; the report embeds PNG images only")
    return data


def png_data_uri(path: Path) -> str:
    """A PNG file as a base64 data: URI."""
    return "data:image/png;base64," + base64.b64encode(read_png(path)).decode("ascii")


def _block_html(block: Block) -> str:
    """One block as HTML."""
    if isinstance(block, Table):
        return to_html(block)
    if isinstance(block, Image):
        caption = html.escape(block.caption)
        return (f'<figure><img src="{png_data_uri(block.path)}" alt="{caption}">'
                f"<figcaption>{caption}</figcaption></figure>")
    return f"<p>{html.escape(block)}</p>"


def render_html(title: str, notes: Sequence[str], sections: Sequence[Section]) -> str:
    """The whole report as one self-contained HTML page (no script, images inline)."""
    contents = "".join(f'<li><a href="#{s.anchor}">{html.escape(s.heading)}</a></li>' for s in sections)
    body = "".join(
        f'<section id="{s.anchor}"><h2>{html.escape(s.heading)}</h2>'
        + "".join(_block_html(block) for block in s.blocks) + "</section>"
        for s in sections
    )
    lead = "".join(f'<p class="lead">{html.escape(note)}</p>' for note in notes)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{lead}<nav><ul>{contents}</ul></nav>{body}"
        f"<footer>Written by agf {__version__}.</footer></body></html>\n"
    )


def _block_markdown(block: Block, base_dir: Path) -> str:
    """One block as Markdown; images link their path relative to `base_dir`."""
    if isinstance(block, Table):
        return to_markdown(block)
    if isinstance(block, Image):
        return f"![{block.caption}]({Path(os.path.relpath(block.path, base_dir)).as_posix()})"
    return block


def render_markdown(title: str, notes: Sequence[str], sections: Sequence[Section], base_dir: Path) -> str:
    """The report as Markdown (for docs); `base_dir` is where the .md file lives."""
    parts = [f"# {title}", *notes]
    for section in sections:
        parts.append(f"## {section.heading}")
        parts += [_block_markdown(block, base_dir) for block in section.blocks]
    return "\n\n".join(parts) + "\n"
