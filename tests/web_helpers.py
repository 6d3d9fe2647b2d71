"""What the Min side tests share: the hidden fields of a page's forms, as a browser submits them."""

from __future__ import annotations

from html.parser import HTMLParser


class HiddenFields(HTMLParser):
    """The hidden fields of each form of a page, by the form's action."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: dict[str, dict[str, str]] = {}
        self._action: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self._action = a.get("action") or ""
            self.forms.setdefault(self._action, {})
        elif tag == "input" and self._action is not None and a.get("type") == "hidden" and a.get("name"):
            self.forms[self._action][a["name"] or ""] = a.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._action = None


def hidden_fields(page: str) -> dict[str, dict[str, str]]:
    parser = HiddenFields()
    parser.feed(page)
    return parser.forms
