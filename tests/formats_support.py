"""Real files for the format tests, made in the test: PDFs (fpdf2, or raw PDF syntax for bombs),
Word and PowerPoint files (python-docx, python-pptx), HTML pages with page furniture, zip bombs."""
from __future__ import annotations

import datetime as dt
import io
import zipfile
import zlib

PDF_PAGE_ONE = ("The Skellig lighthouse was automated in 1987. "
                "Before that, three keepers lived on the rock in rotation.")
PDF_PAGE_TWO = ("Orla Brennan, the last keeper, now runs a small museum on Valentia Island. "
                "The museum opens at nine in the morning from April to October.")

MENU_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Cafe Lumiere - Menu</title>
<meta name="author" content="Ann Baker"><meta name="date" content="2024-03-05">
<style>.x{color:red}</style><script>var trackingPixel = 1;</script></head>
<body>
<nav><a href="/">Home</a> | <a href="/jobs">Careers at the bakery group navigation link</a></nav>
<header><div class="banner">Subscribe to the Lumiere letter for weekly specials banner</div></header>
<main><article>
<h1>Our bakery menu</h1>
<p>We bake every morning in our own wood-fired oven, using flour milled in the valley since 1990.</p>
<p>All prices include VAT and are valid for the whole summer season.</p>
<table>
<tr><th>Pastry</th><th>Price</th></tr>
<tr><td>Croissant</td><td>2.50 EUR</td></tr>
<tr><td>Pain au chocolat</td><td>2.90 EUR</td></tr>
<tr><td>Baguette</td><td>1.20 EUR</td></tr>
</table>
<p>Ask our staff about gluten-free options; they will gladly help you choose a loaf.</p>
</article></main>
<aside>Related: ten secret sourdough tricks sidebar story</aside>
<footer>Copyright 2024 Lumiere Holdings footer imprint and privacy policy</footer>
</body></html>
"""
FURNITURE = ("Careers at the bakery group", "Subscribe to the Lumiere letter", "sourdough tricks",
             "Lumiere Holdings", "trackingPixel", "color:red")


def two_page_pdf(title: str = "Harbour report", author: str = "Orla Brennan") -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title(title)
    pdf.set_author(author)
    pdf.set_creation_date(dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc))
    pdf.set_font("Helvetica", size=12)
    for text in (PDF_PAGE_ONE, PDF_PAGE_TWO):
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def assemble_pdf(objects: list[bytes]) -> bytes:
    """PDF syntax around numbered objects (object 1 the catalog): header, bodies, xref, trailer."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def raw_pdf(page_streams: list[bytes], *, compress: bool = True) -> bytes:
    """A PDF written by hand: one page per content stream (Flate-compressed unless told otherwise)."""
    n = len(page_streams)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode()]
    font = b"/Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >>"
    compressed: dict[int, bytes] = {}  # the bomb repeats one stream: compress it once
    for i, content in enumerate(page_streams):
        if compress and id(content) not in compressed:
            compressed[id(content)] = zlib.compress(content, 9)
        data = compressed[id(content)] if compress else content
        filt = b" /Filter /FlateDecode" if compress else b""
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R ".encode()
                       + font + b" >>")
        objects.append(f"<< /Length {len(data)}".encode() + filt + b" >>\nstream\n" + data + b"\nendstream")
    return assemble_pdf(objects)


def text_op(text: str) -> bytes:
    return f"BT /F1 12 Tf 72 700 Td ({text}) Tj ET\n".encode("latin-1")


def pdf_bomb(pages: int = 10, stream_bytes: int = 70_000_000) -> bytes:
    """The issue's repro: ~700 KB of PDF whose pages each inflate to 70 MB."""
    stream = b" " * stream_bytes
    return raw_pdf([stream] * pages)


def docx_with_table() -> bytes:
    import docx

    d = docx.Document()
    d.core_properties.title = "Bakery price list"
    d.core_properties.author = "Ann Baker"
    d.core_properties.created = dt.datetime(2024, 3, 5, 9, 0)
    d.add_heading("Summer prices", 1)
    d.add_paragraph("These prices apply in the shop on the harbour from June to August.")
    table = d.add_table(rows=3, cols=2)
    for r, (item, price) in enumerate([("Pastry", "Price"), ("Croissant", "2.50 EUR"), ("Eclair", "3.10 EUR")]):
        table.cell(r, 0).text = item
        table.cell(r, 1).text = price
    d.add_paragraph("Prices for cakes to order are on request.")
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def pptx_two_slides() -> bytes:
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    deck.core_properties.title = "Quarterly review"
    deck.core_properties.author = "Ann Baker"
    one = deck.slides.add_slide(deck.slide_layouts[1])
    one.shapes.title.text = "Harbour shop results"
    one.placeholders[1].text = "Sales of croissants grew by twelve percent in the second quarter."
    two = deck.slides.add_slide(deck.slide_layouts[5])
    two.shapes.title.text = "Opening hours"
    table = two.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(6), Inches(1)).table
    for r, (day, hours) in enumerate([("Weekdays", "7:00 to 18:00"), ("Sunday", "8:00 to 12:00")]):
        table.cell(r, 0).text = day
        table.cell(r, 1).text = hours
    buf = io.BytesIO()
    deck.save(buf)
    return buf.getvalue()


def zip_bomb(member: str = "word/document.xml", size: int = 400_000_000) -> bytes:
    """An Office-looking archive whose one member inflates to `size` bytes (stored: a few hundred KB)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open(member, "w", force_zip64=True) as f:
            chunk = b" " * (1 << 20)
            for _ in range(size // len(chunk)):
                f.write(chunk)
    return buf.getvalue()


def pdf_text_decoding_to_surrogates() -> bytes:
    """A PDF whose font's ToUnicode map sends "A" to U+D800: its extracted text holds lone surrogates."""
    cmap = (b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CMapName /X def "
            b"1 begincodespacerange <00> <FF> endcodespacerange 1 beginbfchar <41> <D800> endbfchar "
            b"endcmap CMapName currentdict /CMap defineresource pop end end")
    content = b"BT /F1 12 Tf 72 700 Td (Hello AAA world, this page has text.) Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode 6 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(cmap) + cmap + b"\nendstream",
    ]
    return assemble_pdf(objects)


class PageSite:
    """A small web site for fetch tests, served by uvicorn on loopback (`with site.serve() as base:`).

    /menu.html    the bakery page, with an ETag (answers 304 to a matching If-None-Match)
    /report.pdf   the two-page PDF
    /plain        text/plain without a suffix in the URL
    /image.png    an unsupported content type
    /big          declares a Content-Length over any small cap; /stream sends 3 MB without one
    /hop/N        redirects N times, then to /menu.html; /loop redirects to itself
    /to?url=U     redirects to U (any scheme or host)
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict]] = []  # (path, headers) of every request
        self.bodies_sent = 0  # full (200) page bodies sent
        self.menu = MENU_HTML
        self.pdf = two_page_pdf()

    def app(self):
        from starlette.applications import Starlette
        from starlette.responses import RedirectResponse, Response, StreamingResponse
        from starlette.routing import Route

        site = self

        def etag() -> str:
            import hashlib

            return '"' + hashlib.sha256(site.menu.encode()).hexdigest()[:16] + '"'

        async def record(request):
            site.requests.append((request.url.path, dict(request.headers)))

        async def menu(request):
            await record(request)
            if request.headers.get("if-none-match") == etag():
                return Response(status_code=304, headers={"ETag": etag()})
            site.bodies_sent += 1
            return Response(site.menu, media_type="text/html; charset=utf-8", headers={"ETag": etag()})

        async def pdf(request):
            await record(request)
            site.bodies_sent += 1
            return Response(site.pdf, media_type="application/pdf")

        async def plain(request):
            await record(request)
            return Response("Plain words about the harbour ferry timetable.\n", media_type="text/plain")

        async def image(request):
            await record(request)
            return Response(b"\x89PNG....", media_type="image/png")

        async def big(request):
            await record(request)
            return Response(b"x" * 10, media_type="text/plain", headers={"Content-Length": str(10 ** 9)})

        async def stream(request):
            await record(request)

            async def chunks():
                for _ in range(300):
                    yield b"word " * 2000

            return StreamingResponse(chunks(), media_type="text/plain")

        async def hop(request):
            await record(request)
            n = int(request.path_params["n"])
            return RedirectResponse("/menu.html" if n <= 0 else f"/hop/{n - 1}", status_code=302)

        async def loop(request):
            await record(request)
            return RedirectResponse("/loop", status_code=301)

        async def to(request):
            await record(request)
            return RedirectResponse(request.query_params["url"], status_code=307)

        return Starlette(routes=[Route("/menu.html", menu), Route("/report.pdf", pdf), Route("/plain", plain),
                                 Route("/image.png", image), Route("/big", big), Route("/stream", stream),
                                 Route("/hop/{n}", hop), Route("/loop", loop), Route("/to", to)])

    def serve(self):
        from support import running_server

        return running_server(self.app())
