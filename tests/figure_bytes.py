"""A matplotlib figure as PNG bytes: the tests that check a plotting function against the loop it replaced compare
figures by these bytes (same pixels, same captions)."""
from __future__ import annotations

import io


def png(fig) -> bytes:
    """``fig`` saved as PNG into memory."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
