"""The one Resource Graph query shape the sandbox answers, parsed strictly; anything else is refused, never guessed.

    Resources
    | where type =~ 'microsoft.containerservice/managedclusters'
    | project id, name, resourceGroup, subscriptionId, tags,
              clientId = properties.servicePrincipalProfile.clientId, identityType = identity.type
    | order by id asc

- The table is `Resources` (any case, as ARG's table names are). `where` comes first and compares `type` with a
  string: `=~` ignores case; `==` does not, and ARG stores `type` in lower case, so `== 'Microsoft.X/y'` matches
  nothing, as in Azure.
- `project` (at most once) takes columns of ARG's `resources` table (`COLUMNS`), `alias = <column>`, and
  `[alias =] <properties|identity|sku|tags>.<dotted path>`: a missing path gives null (KQL's dynamic access); an
  unaliased path is named with `_` for `.` (`properties_provisioningState`), as KQL names it.
- `order by id` (or `sort by id`), at most once, `asc` or `desc`; KQL's default direction is `desc`. After a
  `project`, `id` must be one of its columns. Without it, rows come in ascending `id` order, which is also ARG's
  paging order.

Everything else (other tables, operators, functions, comments) raises `QueryError` with the position of the token
that could not be read: the caller answers ARG's 400 InvalidQuery with a ParserFailure detail there.

Pure functions: no state, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# ARG's `resources` table: its columns and the types its table result format gives them.
COLUMNS = {"id": "string", "name": "string", "type": "string", "tenantId": "string", "kind": "string",
           "location": "string", "resourceGroup": "string", "subscriptionId": "string", "managedBy": "string",
           "sku": "object", "plan": "object", "properties": "object", "tags": "object", "identity": "object",
           "zones": "object", "extendedLocation": "object"}
DYNAMIC_ROOTS = frozenset({"properties", "identity", "sku", "tags"})  # columns a dotted path may start from
SUPPORTED = ("Resources | where type =~ '<type>' [| project <columns>] [| order by id asc|desc]; <columns>: "
             f"{', '.join(COLUMNS)}, alias = <column>, [alias =] properties.<path> (or identity., sku., tags.)")
_TOKEN = re.compile(r"""(?P<space>\s+)
                      |(?P<string>'[^'\\\n]*'|"[^"\\\n]*")
                      |(?P<name>[A-Za-z_][A-Za-z0-9_]*)
                      |(?P<op>=~|==|[|,=.])
                      |(?P<number>\d+)
                      |(?P<other>.)""", re.VERBOSE | re.DOTALL)


class QueryError(ValueError):
    """The query is outside the supported shape: `token` (or `<EOF>`) at `offset` of the text could not be read."""

    def __init__(self, text: str, offset: int, token: str, expected: str) -> None:
        super().__init__(f"{expected}; found {token!r}. The sandbox answers only {SUPPORTED}.")
        self.token = token
        self.line = text.count("\n", 0, offset) + 1
        self.position = offset - (text.rfind("\n", 0, offset) + 1)


@dataclass(frozen=True)
class Column:
    name: str  # the output column's name
    path: tuple[str, ...]  # where its value lies in a row: ("id",) or ("properties", "provisioningState")

    @property
    def table_type(self) -> str:
        """Its type in the table result format: a path into a dynamic column is dynamic ("object")."""
        return COLUMNS[self.path[0]] if len(self.path) == 1 else "object"

    def value(self, row: dict[str, Any]) -> Any:
        found: Any = row
        for key in self.path:
            found = found.get(key) if isinstance(found, dict) else None
        return found


@dataclass(frozen=True)
class ClusterQuery:
    """A parsed query: which rows (`type` compared with `type_literal`), which columns (None: all), in which order."""

    type_literal: str
    ignore_case: bool
    columns: tuple[Column, ...] | None
    descending: bool

    def matches(self, row_type: str) -> bool:
        if self.ignore_case:
            return row_type.lower() == self.type_literal.lower()
        return row_type == self.type_literal

    @property
    def output(self) -> tuple[Column, ...]:
        return self.columns if self.columns is not None else tuple(Column(name, (name,)) for name in COLUMNS)

    @property
    def pageable(self) -> bool:
        """ARG pages only results that carry the `id` column (work-with-data: "The query must project the id field in
        order for pagination to work")."""
        return any(c.name == "id" and c.path == ("id",) for c in self.output)

    def shape(self, row: dict[str, Any]) -> dict[str, Any]:
        return {column.name: column.value(row) for column in self.output}


def parse(text: str) -> ClusterQuery:
    """The query `text` as a ClusterQuery; QueryError where it leaves the supported shape."""
    return _Parser(text).query()


@dataclass(frozen=True)
class _Token:
    kind: str  # "name", "string", "op", "number", "other", "end"
    text: str
    offset: int


def _tokens(text: str) -> list[_Token]:
    found, offset = [], 0
    while offset < len(text):
        match = _TOKEN.match(text, offset)
        assert match is not None  # `other` takes any character
        if match.lastgroup != "space":
            found.append(_Token(match.lastgroup or "", match.group(), offset))
        offset = match.end()
    return [*found, _Token("end", "<EOF>", len(text))]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.at = 0

    # ------------------------------------------------------------------ the grammar

    def query(self) -> ClusterQuery:
        self._word("Resources", ignore_case=True)
        self._op("|")
        type_literal, ignore_case = self._where()
        columns: tuple[Column, ...] | None = None
        descending: bool | None = None
        while self._peek().text == "|":
            self._next()
            stage = self._peek()
            if stage.text == "project" and columns is None:
                self._next()
                columns = self._columns()
            elif stage.text in ("order", "sort") and descending is None:
                descending = self._order(columns)
            else:
                self._fail("'project' or 'order by', each at most once")
        if self._peek().kind != "end":
            self._fail("'|' or the end of the query")
        return ClusterQuery(type_literal, ignore_case, columns, bool(descending))

    def _where(self) -> tuple[str, bool]:
        self._word("where")
        self._word("type")
        operator = self._next()
        if operator.text not in ("=~", "=="):
            self._fail("'=~' or '=='", operator)
        literal = self._next()
        if literal.kind != "string":
            self._fail("a string literal", literal)
        return literal.text[1:-1], operator.text == "=~"

    def _columns(self) -> tuple[Column, ...]:
        columns = [self._column()]
        while self._peek().text == ",":
            self._next()
            start = self._peek()
            column = self._column()
            if any(c.name == column.name for c in columns):
                self._fail(f"distinct column names (KQL would rename the second '{column.name}')", start)
            columns.append(column)
        return tuple(columns)

    def _column(self) -> Column:
        first = self._name("a column name")
        if self._peek().text == "=":
            self._next()
            return Column(first.text, self._path())
        self.at -= 1  # not an alias: the name starts the path
        path = self._path()
        return Column("_".join(path), path)

    def _path(self) -> tuple[str, ...]:
        root = self._name("a column name")
        if root.text not in COLUMNS:
            self._fail(f"a column of ARG's resources table ({', '.join(COLUMNS)})", root)
        path = [root.text]
        while self._peek().text == ".":
            if root.text not in DYNAMIC_ROOTS:
                self._fail(f"a path into one of {', '.join(sorted(DYNAMIC_ROOTS))}", root)
            self._next()
            path.append(self._name("a property name").text)
        return tuple(path)

    def _order(self, columns: tuple[Column, ...] | None) -> bool:
        self._next()
        self._word("by")
        key = self._name("'id'")
        if key.text != "id" or (columns is not None and not any(c.name == "id" for c in columns)):
            self._fail("'id' (the one sort key the sandbox supports, and a column of the result)", key)
        direction = self._peek()
        if direction.text in ("asc", "desc"):
            self._next()
            return direction.text == "desc"
        return True  # KQL sorts descending unless told otherwise

    # ------------------------------------------------------------------ tokens

    def _peek(self) -> _Token:
        return self.tokens[self.at]

    def _next(self) -> _Token:
        token = self.tokens[self.at]
        self.at = min(self.at + 1, len(self.tokens) - 1)
        return token

    def _word(self, word: str, *, ignore_case: bool = False) -> None:
        token = self._next()
        same = token.text.lower() == word.lower() if ignore_case else token.text == word
        if token.kind != "name" or not same:
            self._fail(f"'{word}'", token)

    def _op(self, op: str) -> None:
        token = self._next()
        if token.text != op:
            self._fail(f"'{op}'", token)

    def _name(self, expected: str) -> _Token:
        token = self._next()
        if token.kind != "name":
            self._fail(expected, token)
        return token

    def _fail(self, expected: str, token: _Token | None = None) -> Any:
        token = token or self._peek()
        raise QueryError(self.text, token.offset, token.text, f"expected {expected}")
