"""Make the QC report picture of docs/qc.md from a report: ``python scripts/qc_screenshot.py REPORT.html OUT.png``.

Headless Chromium renders the page at 1280 px; the picture stacks two parts of it: the top (summary,
warnings, failures, outliers) and the compact subject table with the first montages. Positions come
from the page's own layout, read with a script added to a temporary copy.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

WIDTH = 1280
FLAGS = ["--headless", "--hide-scrollbars", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MEASURE = """<script>(function(){const y=e=>Math.round(e.getBoundingClientRect().top+scrollY),
b=e=>Math.round(e.getBoundingClientRect().bottom+scrollY),figs=document.querySelectorAll('.montage figure');
const out={top_end:b(document.getElementById('flagged')||document.getElementById('sec-outliers')),
subjects:y(document.getElementById('sec-subjects')),end:b(figs[Math.min(1,figs.length-1)]||document.body)};
const p=document.createElement('pre');p.id='measure';p.textContent=JSON.stringify(out);document.body.appendChild(p);})();
</script>"""


def main(report: Path, out: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium not found")
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(report.read_text().replace("</body>", MEASURE + "</body>"))
        flags = [browser, *FLAGS, f"--user-data-dir={tmp}/profile"]
        dom = subprocess.run([*flags, f"--window-size={WIDTH},2000", "--dump-dom", page.as_uri()], check=True,
                             capture_output=True, text=True, timeout=120).stdout
        pos = json.loads(html.unescape(re.search(r'<pre id="measure">(.*?)</pre>', dom, re.S).group(1)))
        shot = Path(tmp) / "shot.png"
        subprocess.run([*flags, f"--window-size={WIDTH},{pos['end'] + 20}", f"--screenshot={shot}", page.as_uri()],
                       check=True, capture_output=True, timeout=120)
        full = Image.open(shot).convert("RGB")
        parts = [full.crop((0, 0, WIDTH, pos["top_end"] + 4)),
                 full.crop((0, pos["subjects"] - 24, WIDTH, pos["end"] + 12))]
        sheet = Image.new("RGB", (WIDTH, sum(p.height for p in parts) + 6), (120, 120, 120))
        sheet.paste(parts[0], (0, 0))
        sheet.paste(parts[1], (0, parts[0].height + 6))
        out.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(out, optimize=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
