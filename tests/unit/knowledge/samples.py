"""Small real documents of every type, built in memory for the loader tests."""

from __future__ import annotations

from fpdf import FPDF

MARKDOWN = b"""# Returns

Intro line.

## Window

Thirty days.
"""

HTML = b"""<!doctype html>
<html><head><title>Returns policy</title><style>p { color: red }</style></head>
<body>
  <header><a href="/">Shop</a></header>
  <nav><ul><li>Home</li><li>Bikes</li></ul></nav>
  <main>
    <h1>Returns</h1>
    <p>Unused items can be
       returned.</p>
    <h2>Window</h2>
    <p>Thirty <b>days</b> from delivery.</p>
    <aside>Related: warranty</aside>
    <h3>Exceptions</h3>
    <p>Bikes ridden over 50 km.</p>
    <form><input name="q"><button>Search</button></form>
    <h2>Refunds</h2>
    <p>Five working days.</p>
    <script>track("returns")</script>
  </main>
  <footer>Copyright Shop</footer>
</body></html>
"""

TEXT = b"First paragraph.\n\nSecond paragraph.\n"

PYTHON = b'''"""Battery helpers."""

import os


class Battery:
    """A pack."""

    def charge(self) -> None:
        pass
'''

TICKETS_JSON = b"""[
  {"external_id": "T-1", "customer": "C-1", "subject": "LEDs blinking", "status": "solved",
   "created_at": "2026-10-03T09:14:00Z",
   "messages": [{"from": "customer", "text": "All LEDs blink."},
                {"from": "agent", "text": "Warranty check booked."}]},
  {"external_id": "T-2", "customer": "C-2", "subject": "Where is my bike?", "status": "open",
   "created_at": "2026-11-21T12:02:00Z",
   "messages": [{"from": "customer", "text": "No tracking yet."}]}
]
"""


def make_pdf(pages: list[list[str]], *, title: str = "", text: bool = True) -> bytes:
    """One page per entry, one paragraph per string, with a blank line between paragraphs."""
    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    if title:
        pdf.set_title(title)
    for paragraphs in pages:
        pdf.add_page()
        if not text:
            pdf.rect(20, 20, 80, 40)  # a drawing only: nothing to extract
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph)
            pdf.ln(8)
    return bytes(pdf.output())


PDF_PAGES = [
    ["Battery care starts with a full charge.", "Store the battery at room temperature over winter."],
    ["Warranty claims need the frame number."],
]
