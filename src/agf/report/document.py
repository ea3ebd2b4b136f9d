"""The report as a document model (sections of tables, figures and paragraphs) and its two renderings.

report.html is self-contained: CSS inline, every image a base64 data: URI, no script and no external
resource, so it opens offline. tables.md links the figures by path relative to itself. Both open with the
headline section, then the notes, then the other sections.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
pre { background: #f7f9fb; border: 1px solid #e3e7ec; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
#headline { border: 2px solid #d6dce3; padding: 0 1em 0.6em; } #headline h2 { margin-top: 0.6em; }
footer { margin-top: 3em; color: #8a949e; font-size: 0.85em; }
"""


@dataclass(frozen=True)
class Image:
    """A PNG on disk shown with a caption."""

    path: Path
    caption: str


@dataclass(frozen=True)
class Code:
    """A file's text shown verbatim, folded under its name."""

    name: str
    text: str


Block = Table | Image | Code | str


@dataclass(frozen=True)
class Section:
    """A titled part of the report: tables, images and paragraphs (plain strings), in order. A section with a
    `fold` text shows its blocks in report.html only when opened (the text says what they are); tables.md shows
    them all."""

    anchor: str
    heading: str
    blocks: tuple[Block, ...]
    fold: str = ""


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
    if isinstance(block, Code):
        return f"<details><summary>{html.escape(block.name)}</summary><pre>{html.escape(block.text)}</pre></details>"
    return f"<p>{html.escape(block)}</p>"


def _section_html(section: Section) -> str:
    """One section as HTML; a folded one as a <details> element under its heading."""
    blocks = "".join(_block_html(block) for block in section.blocks)
    if section.fold:
        blocks = f"<details><summary>{html.escape(section.fold)}</summary>{blocks}</details>"
    return f'<section id="{section.anchor}"><h2>{html.escape(section.heading)}</h2>{blocks}</section>'


def render_html(title: str, headline: Section, notes: Sequence[str], sections: Sequence[Section], footer: str) -> str:
    """The whole report as one self-contained HTML page (no script, images inline): the headline first, then the
    notes, the contents and the sections."""
    contents = "".join(f'<li><a href="#{s.anchor}">{html.escape(s.heading)}</a></li>' for s in sections)
    lead = "".join(f'<p class="lead">{html.escape(note)}</p>' for note in notes)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{_section_html(headline)}{lead}<nav><ul>{contents}</ul></nav>"
        f"{''.join(_section_html(s) for s in sections)}<footer>{html.escape(footer)}</footer></body></html>\n"
    )


def _block_markdown(block: Block, base_dir: Path) -> str:
    """One block as Markdown; images link their path relative to `base_dir`."""
    if isinstance(block, Table):
        return to_markdown(block)
    if isinstance(block, Image):
        return f"![{block.caption}]({Path(os.path.relpath(block.path, base_dir)).as_posix()})"
    if isinstance(block, Code):
        return f"{block.name}:\n\n```\n{block.text.rstrip()}\n```"
    return block


def render_markdown(title: str, headline: Section, notes: Sequence[str], sections: Sequence[Section],
                    base_dir: Path, footer: str) -> str:
    """The report as Markdown (for docs), in the order of render_html; `base_dir` is where the .md file lives."""
    parts = [f"# {title}"]
    for position, section in enumerate([headline, *sections]):
        parts.append(f"## {section.heading}")
        parts += [_block_markdown(block, base_dir) for block in section.blocks]
        if position == 0:
            parts += notes
    return "\n\n".join([*parts, footer]) + "\n"
