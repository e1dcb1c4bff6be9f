"""Reading a customer's plain SQL dump as psql would, to refuse what escapes the tenant's database.

An imported `dump.sql` runs through psql as the tenant's own role, never as a superuser: that is
what keeps it inside its database. This check comes first so that a dump that tries more is
refused with a clear reason before anything runs, rather than half-applied and rolled back: no
statement that changes roles or role membership (CREATE/ALTER/DROP ROLE, USER, GROUP; GRANT or
REVOKE of a role), ownership (OWNER TO, REASSIGN/DROP OWNED, default privileges for another
role), other databases or the server (CREATE/ALTER/DROP DATABASE, ALTER SYSTEM, LOAD), the
session's identity (SET/RESET ROLE or SESSION AUTHORIZATION, `set_config('role', ...)`), COPY
other than `FROM stdin`, and no psql meta-command (`\\connect`, `\\!`, `\\o`, `\\i`, `\\copy`,
...) but the `\\restrict`/`\\unrestrict` pair recent pg_dump releases write around a dump.

It lexes the way psql does, so text inside a string, a quoted identifier, a dollar-quoted body,
a comment or COPY's data is never mistaken for a statement or a meta-command, and a backslash
outside them always is one. `standard_conforming_strings` must stay on (pg_dump sets it so):
turned off, psql and this check would read backslashes in strings differently. Statements
inside function bodies and DO blocks are not looked into: they run as the tenant role, which
cannot do any of the above.

The dump is read line by line (a dump may be many gigabytes, mostly COPY data, which is only
scanned for its end marker).
"""

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

RESTRICT = re.compile(r"\\(un)?restrict(\s+\S+)?\s*$")
"""`\\restrict KEY` / `\\unrestrict KEY`: the only meta-commands a dump may hold, alone on
their line (they guard psql against the dump; the restore drops them)."""

_TOKEN = re.compile(
    r"(?P<quote>(?<![\w$])[eE]'|')"
    r'|(?P<ident>")'
    r"|(?P<dollar>(?<![\w$])\$([^\W\d]\w*)?\$)"
    r"|(?P<line>--)"
    r"|(?P<block>/\*)"
    r"|(?P<meta>\\)"
    r"|(?P<end>;)"
)
"""Where something begins that changes how the rest is read (as psql's lexer sees it): a
string (E'...' reads backslash escapes; an E inside a word does not start one), a quoted
identifier, a dollar-quoted body, a comment, a meta-command, the end of a statement."""
_SET_CONFIG = re.compile(r"\bset_config\s*\(\s*$", re.IGNORECASE)
_STRING_END = re.compile(r"''|'")
_ESTRING_END = re.compile(r"\\.|''|'", re.DOTALL)
_BLOCK = re.compile(r"/\*|\*/")

KEPT_LITERAL = 128
"""The first argument of set_config stays in a statement's text up to this long (what it is
asked to set); every other literal becomes '', every quoted identifier "", so no data or name
is ever read as a keyword."""
STATEMENT_TEXT = 64 * 1024
"""A statement's text beyond this is not kept (its head decides; literals are dropped)."""


class DumpRefusedError(Exception):
    """The dump holds something an import does not run."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"dump.sql line {line}: {reason}")
        self.line = line
        self.reason = reason


def _rule(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (_rule(r"^(CREATE|ALTER|DROP)\s+(ROLE|USER|GROUP)\b"), "changes roles"),
    (_rule(r"^(GRANT|REVOKE)\b(?!.*\bON\b)"), "changes role membership"),
    (_rule(r"\bOWNER\s+TO\b"), "changes ownership"),
    (_rule(r"^(REASSIGN|DROP)\s+OWNED\b"), "changes ownership"),
    (_rule(r"^ALTER\s+DEFAULT\s+PRIVILEGES\s+FOR\b"), "changes another role's privileges"),
    (_rule(r"^(CREATE|ALTER|DROP)\s+DATABASE\b"), "changes a database's settings or existence"),
    (_rule(r"^ALTER\s+SYSTEM\b"), "changes the server's settings"),
    (_rule(r"^LOAD\b"), "loads a server library"),
    (
        _rule(r"^(SET|RESET)\s+((SESSION|LOCAL)\s+)?(ROLE|SESSION\s+AUTHORIZATION)\b"),
        "changes the session's identity",
    ),
    (
        _rule(r"^SET\s+((SESSION|LOCAL)\s+)?STANDARD_CONFORMING_STRINGS\s*(=|TO)(?!\s*(ON|TRUE)$)"),
        "sets standard_conforming_strings to anything but on",
    ),
    (
        _rule(
            r"\bSET_CONFIG\s*\(\s*(?!'[a-z_.]+'\s*,)"
            r"|\bSET_CONFIG\s*\(\s*'(ROLE|SESSION_AUTHORIZATION|STANDARD_CONFORMING_STRINGS)'"
        ),
        "changes the session's identity or how strings are read (set_config)",
    ),
    (
        _rule(r"^COPY\b(?!\s+[^;]*?\bFROM\s+STDIN\b)"),
        "COPY other than FROM stdin (a file or a program)",
    ),
)
"""A statement's text (literals longer than KEPT_LITERAL dropped, comments out, spaces
collapsed) -> why it is refused."""

_COPY_FROM_STDIN = _rule(r"^COPY\b[^;]*\bFROM\s+STDIN\b")


@dataclass
class _State:
    line: int = 0
    text: list[str] | None = None
    size: int = 0
    start: int = 0
    """The line the statement began on."""
    within: str | None = None
    """What a line ends inside: "'" or "e'" (a string), '"', a dollar tag, or "/*"."""
    depth: int = 0
    """Nesting of block comments."""
    literal: list[str] | None = None
    copy: bool = False


class DumpChecker:
    """Feed it the dump's lines in order; `finish` once they are all read."""

    def __init__(self) -> None:
        self._s = _State()

    def feed(self, line: str) -> None:
        """Check one line (with or without its newline); DumpRefusedError if it must not run."""
        s = self._s
        s.line += 1
        if s.copy:
            if line.rstrip("\r\n") == "\\.":
                s.copy = False
            return
        if s.within is None and s.text is None and RESTRICT.fullmatch(line.strip()):
            return
        self._lex(line)

    def finish(self) -> None:
        """The dump ended: nothing may be left open."""
        s = self._s
        if s.copy:
            raise DumpRefusedError(s.line, "COPY data without its end marker (\\.)")
        if s.within is not None:
            raise DumpRefusedError(s.line, "the dump ends inside a string, identifier or comment")

    def _add(self, text: str) -> None:
        s = self._s
        if not text:
            return
        if s.text is None:
            if not text.strip():
                return
            s.text, s.size, s.start = [], 0, s.line
        if s.size < STATEMENT_TEXT:
            s.text.append(text)
            s.size += len(text)

    def _lex(self, line: str) -> None:
        s = self._s
        at = 0
        while at < len(line):
            if s.within is not None:
                at = self._inside(line, at)
                continue
            found = _TOKEN.search(line, at)
            if found is None:
                self._add(line[at:])
                return
            self._add(line[at : found.start()])
            kind, token = found.lastgroup, found.group()
            at = found.end()
            if kind == "quote":
                s.within, s.literal = token.lower(), []
            elif kind == "ident":
                s.within = '"'
                self._add('""')
            elif kind == "dollar":
                s.within = token
                self._add(" $$ ")
            elif kind == "line":
                self._add(" ")
                return
            elif kind == "block":
                s.within, s.depth = "/*", 1
            elif kind == "meta":
                name = re.match(r"[A-Za-z!?.]*", line[at:])
                command = name.group() if name else ""
                raise DumpRefusedError(s.line, f"psql meta-command \\{command} is not allowed")
            else:  # the end of a statement
                self._statement()
                if s.copy and line[at:].strip():
                    raise DumpRefusedError(s.line, "text after COPY ... FROM stdin on its line")
                if s.copy:
                    return

    def _inside(self, line: str, at: int) -> int:
        s = self._s
        within = s.within
        if within in ("'", "e'"):
            pattern = _STRING_END if within == "'" else _ESTRING_END
            while True:
                found = pattern.search(line, at)
                if found is None:
                    self._literal(line[at:])
                    return len(line)
                self._literal(line[at : found.start()])
                at = found.end()
                if found.group() == "'":
                    literal = "".join(s.literal or [])
                    before = "".join(s.text or [])[-40:]
                    kept = len(literal) <= KEPT_LITERAL and _SET_CONFIG.search(before)
                    self._add(f"'{literal}'" if kept else "''")
                    s.within, s.literal = None, None
                    return at
                self._literal(found.group())
        if within == '"':
            end = line.find('"', at)
            while end != -1 and line.startswith('""', end):
                end = line.find('"', end + 2)
            if end == -1:
                return len(line)
            s.within = None
            return end + 1
        if within == "/*":
            while True:
                found = _BLOCK.search(line, at)
                if found is None:
                    return len(line)
                at = found.end()
                s.depth += 1 if found.group() == "/*" else -1
                if s.depth == 0:
                    s.within = None
                    self._add(" ")
                    return at
        tag = within or ""  # a dollar tag
        end = line.find(tag, at)
        if end == -1:
            return len(line)
        s.within = None
        return end + len(tag)

    def _literal(self, text: str) -> None:
        s = self._s
        if s.literal is not None and sum(map(len, s.literal)) <= KEPT_LITERAL:
            s.literal.append(text)

    def _statement(self) -> None:
        s = self._s
        text = " ".join("".join(s.text or []).split())
        start = s.start or s.line
        s.text, s.size = None, 0
        if not text:
            return
        for pattern, reason in RULES:
            if pattern.search(text):
                head = text if len(text) <= 80 else text[:77] + "..."
                raise DumpRefusedError(start, f"{reason}: {head}")
        if _COPY_FROM_STDIN.search(text):
            s.copy = True


def check_dump(lines: Iterable[str]) -> int:
    """Check a whole dump; how many lines it has. DumpRefusedError at the first refusal."""
    checker = DumpChecker()
    for line in lines:
        checker.feed(line)
    checker.finish()
    return checker._s.line


def runnable(lines: Iterable[str]) -> Iterator[str]:
    """The dump as psql gets it: the `\\restrict`/`\\unrestrict` lines dropped (the check
    guarded against what they guard against, and an older psql does not know them). Only
    lines the check passed come here, so such a line is never inside COPY data or a string
    (a checked dump's other lines are passed through unchanged)."""
    checker = DumpChecker()
    for line in lines:
        top = checker._s.within is None and checker._s.text is None and not checker._s.copy
        checker.feed(line)
        if top and RESTRICT.fullmatch(line.strip()):
            continue
        yield line
