"""The Resource Graph query shapes the sandbox answers, parsed strictly; anything else is refused, never guessed.

    Resources
    | where type =~ 'microsoft.containerservice/managedclusters'
        and properties.servicePrincipalProfile.clientId =~ '<appId>'
    | extend rg = tolower(resourceGroup)
    | join kind=leftouter (ResourceContainers
        | where type =~ 'microsoft.resources/subscriptions/resourcegroups'
        | project subscriptionId, rg = tolower(name), groupTags = tags) on subscriptionId, rg
    | project id, name, resourceGroup, subscriptionId, tags, groupTags,
              clientId = properties.servicePrincipalProfile.clientId, identityType = identity.type
    | order by id asc

- Tables: `Resources` and `ResourceContainers` (any case, as ARG's table names are), both with the columns of ARG's
  `resources` table (`COLUMNS`). A table is always followed by a `where` whose first condition compares `type` with a
  string: `=~` ignores case; `==` does not, and ARG stores `type` in lower case, so `== 'Microsoft.X/y'` matches
  nothing, as in Azure. That `where` names the rows the sandbox builds.
- `where <expr> =~|== '<string>' [and ...]`: conditions joined by `and`.
- Expressions: a column, `<dynamic column>.<dotted path>` (a missing path gives null, KQL's dynamic access),
  `tolower(<expr>)`, `toupper(<expr>)`, a string literal.
- `extend name = <expr>[, ...]` adds (or replaces, in place) columns; `project` keeps `[name =] <expr>`: an unaliased
  path is named with `_` for `.` (`properties_provisioningState`), as KQL names it; a computed column needs a name.
- `join [kind=innerunique|inner|leftouter|fullouter] (<table> | ...) on <key>[, ...]`, a key being a column of both
  sides or `$left.<column> == $right.<column>` (keys also joined by `and`). KQL's default kind is `innerunique`
  (the left side deduplicated on the keys). The right side's columns follow the left's; a right column whose name the
  left already has is renamed with a number (`subscriptionId1`), as KQL does. Keys compare exactly (KQL's `==`), so
  case is matched with `tolower` on both sides, as Microsoft's samples do. At most `MAX_JOINS` joins (Resource Graph's
  documented limit). Other KQL join kinds raise `JoinFlavorError` (ARG's UnsupportedJoinFlavor).
- `order by id` (or `sort by id`), `asc` or `desc`; KQL's default direction is `desc`. `id` must be a column of the
  result at that point. Without it, rows come in ascending `id` order, which is also ARG's paging order.

Everything else (other tables, operators, functions, comments) raises `QueryError` with the position of the token
that could not be read: the caller answers ARG's 400 InvalidQuery with a ParserFailure detail there.

Pure functions: no state, no I/O (a parsed query reads its tables through the function `Query.run` is given).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# ARG's `resources` table (and `resourcecontainers`, which has the same columns): its columns and the types its table
# result format gives them.
COLUMNS = {"id": "string", "name": "string", "type": "string", "tenantId": "string", "kind": "string",
           "location": "string", "resourceGroup": "string", "subscriptionId": "string", "managedBy": "string",
           "sku": "object", "plan": "object", "properties": "object", "tags": "object", "identity": "object",
           "zones": "object", "extendedLocation": "object"}
TABLES = {"resources": "Resources", "resourcecontainers": "ResourceContainers"}
FUNCTIONS = {"tolower": str.lower, "toupper": str.upper}
# query-language ("Resource Graph tables support the join flavors"): innerunique, inner, leftouter, fullouter.
JOIN_KINDS = ("innerunique", "inner", "leftouter", "fullouter")
# KQL's other join kinds, named as ARG's UnsupportedJoinFlavor message names them (MicrosoftDocs/azure-docs#45495).
UNSUPPORTED_JOIN_KINDS = {"leftsemi": "LeftSemi", "rightsemi": "RightSemi", "leftanti": "LeftAnti",
                          "rightanti": "RightAnti", "leftantisemi": "LeftAntiSemi", "rightantisemi": "RightAntiSemi",
                          "rightouter": "RightOuter", "anti": "LeftAnti", "semi": "LeftSemi"}
MAX_JOINS = 3  # query-language's operator table (3 `join`s a query; microsoft/finops-toolkit#2227 cites it)
SUPPORTED = ("Resources|ResourceContainers | where type =~|== '<type>' [and <expr> =~|== '<string>'] "
             "[| where ...] [| extend name = <expr>] [| project [name =] <expr>, ...] "
             "[| join [kind=innerunique|inner|leftouter|fullouter] (<table> | where type ... | ...) "
             "on <column>|$left.<column> == $right.<column>, ...] [| order by id asc|desc]; <expr>: a column of "
             f"{', '.join(COLUMNS)}, <dynamic column>.<path>, tolower(<expr>), toupper(<expr>), '<string>'")
_TOKEN = re.compile(r"""(?P<space>\s+)
                      |(?P<string>'[^'\\\n]*'|"[^"\\\n]*")
                      |(?P<name>[A-Za-z_][A-Za-z0-9_]*)
                      |(?P<op>=~|==|[|,=.()$])
                      |(?P<number>\d+)
                      |(?P<other>.)""", re.VERBOSE | re.DOTALL)

Row = dict[str, Any]


class QueryError(ValueError):
    """The query is outside the supported shape: `token` (or `<EOF>`) at `offset` of the text could not be read."""

    def __init__(self, text: str, offset: int, token: str, expected: str) -> None:
        super().__init__(f"{expected}; found {token!r}. The sandbox answers only {SUPPORTED}.")
        self.token = token
        self.line = text.count("\n", 0, offset) + 1
        self.position = offset - (text.rfind("\n", 0, offset) + 1)


class JoinFlavorError(QueryError):
    """A join kind KQL has and Resource Graph refuses: ARG's UnsupportedJoinFlavor, in its words."""

    def __init__(self, text: str, offset: int, token: str) -> None:
        super().__init__(text, offset, token, "a join kind Resource Graph supports")
        self.args = (f'The join kind "{UNSUPPORTED_JOIN_KINDS[token.lower()]}" is not supported or not allowed.',)


# ---------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Path:
    """A column, or a dotted path into a dynamic one."""

    names: tuple[str, ...]

    def value(self, row: Row) -> Any:
        found: Any = row
        for key in self.names:
            found = found.get(key) if isinstance(found, dict) else None
        return found

    def table_type(self, schema: dict[str, str]) -> str:
        return schema[self.names[0]] if len(self.names) == 1 else "object"


@dataclass(frozen=True)
class Call:
    function: str  # a key of FUNCTIONS
    argument: Expression

    def value(self, row: Row) -> Any:
        found = self.argument.value(row)
        if found is None:
            return ""  # KQL: a string function of null is the empty string
        return FUNCTIONS[self.function](found if isinstance(found, str) else json.dumps(found))

    def table_type(self, schema: dict[str, str]) -> str:
        return "string"


@dataclass(frozen=True)
class Literal:
    text: str

    def value(self, row: Row) -> Any:
        return self.text

    def table_type(self, schema: dict[str, str]) -> str:
        return "string"


Expression = Path | Call | Literal


# ---------------------------------------------------------------------- operators


@dataclass(frozen=True)
class Source:
    """A table and the `type` its first `where` asks for: the rows the sandbox builds for it."""

    table: str  # a key of TABLES (lower case)
    type_literal: str
    ignore_case: bool

    def matches(self, row_type: str) -> bool:
        if self.ignore_case:
            return row_type.lower() == self.type_literal.lower()
        return row_type == self.type_literal


@dataclass(frozen=True)
class Condition:
    expression: Expression
    literal: str
    ignore_case: bool

    def holds(self, row: Row) -> bool:
        found = self.expression.value(row)
        if not isinstance(found, str):
            return False
        return found.lower() == self.literal.lower() if self.ignore_case else found == self.literal


@dataclass(frozen=True)
class Where:
    conditions: tuple[Condition, ...]

    def apply(self, rows: list[Row], read: Reader) -> list[Row]:
        return [row for row in rows if all(c.holds(row) for c in self.conditions)]


@dataclass(frozen=True)
class Extend:
    columns: tuple[tuple[str, Expression], ...]

    def apply(self, rows: list[Row], read: Reader) -> list[Row]:
        return [{**row, **{name: expr.value(row) for name, expr in self.columns}} for row in rows]


@dataclass(frozen=True)
class Project:
    columns: tuple[tuple[str, Expression], ...]

    def apply(self, rows: list[Row], read: Reader) -> list[Row]:
        return [{name: expr.value(row) for name, expr in self.columns} for row in rows]


@dataclass(frozen=True)
class Order:
    descending: bool

    def apply(self, rows: list[Row], read: Reader) -> list[Row]:
        return sorted(rows, key=lambda row: row.get("id") or "", reverse=self.descending)


@dataclass(frozen=True)
class Join:
    kind: str  # one of JOIN_KINDS
    right: Query
    keys: tuple[tuple[str, str], ...]  # (left column, right column)
    renamed: tuple[tuple[str, str], ...]  # (right column, its name in the output)
    left_columns: tuple[str, ...]

    def apply(self, rows: list[Row], read: Reader) -> list[Row]:
        right_rows = self.right.run(read)
        index: dict[tuple[str, ...], list[int]] = {}
        for at, row in enumerate(right_rows):
            key = _key(row, [r for _, r in self.keys])
            if key is not None:
                index.setdefault(key, []).append(at)
        seen: set[tuple[str, ...]] = set()
        matched: set[int] = set()
        joined: list[Row] = []
        for row in rows:
            key = _key(row, [left for left, _ in self.keys])
            if self.kind == "innerunique":  # KQL: the left side deduplicated on the keys first
                if key is not None and key in seen:
                    continue
                if key is not None:
                    seen.add(key)
            hits = index.get(key, []) if key is not None else []
            for at in hits:
                matched.add(at)
                joined.append({**row, **self._right(right_rows[at])})
            if not hits and self.kind in ("leftouter", "fullouter"):
                joined.append({**row, **self._right(None)})
        if self.kind == "fullouter":
            empty = dict.fromkeys(self.left_columns)
            joined += [{**empty, **self._right(r)} for at, r in enumerate(right_rows) if at not in matched]
        return joined

    def _right(self, row: Row | None) -> Row:
        return {name: (row.get(column) if row is not None else None) for column, name in self.renamed}


Stage = Where | Extend | Project | Order | Join
Reader = Callable[[Source], list[Row]]  # the rows of a table of the given source (the caller's, visible to it)


@dataclass(frozen=True)
class Query:
    """A parsed query: a table, the operators applied to its rows in turn, and the columns of its result."""

    source: Source
    stages: tuple[Stage, ...]
    schema: tuple[tuple[str, str], ...]  # (name, table result format type) of the result's columns, in order

    @property
    def columns(self) -> tuple[tuple[str, str], ...]:
        return self.schema

    @property
    def pageable(self) -> bool:
        """ARG pages only results that carry the `id` column (work-with-data: "The query must project the id field in
        order for pagination to work")."""
        return any(name == "id" for name, _ in self.schema)

    def sources(self) -> list[Source]:
        """Every table source the query reads, its joins' included."""
        return [self.source, *(s for stage in self.stages if isinstance(stage, Join) for s in stage.right.sources())]

    def run(self, read: Reader) -> list[Row]:
        """The result's rows: the table's rows, by `read`, in ascending `id` (ARG's paging order), through the
        operators; each row carries exactly the result's columns."""
        rows = sorted(read(self.source), key=lambda row: row["id"])
        for stage in self.stages:
            rows = stage.apply(rows, read)
        names = [name for name, _ in self.schema]
        return [{name: row.get(name) for name in names} for row in rows]


def parse(text: str) -> Query:
    """The query `text` as a Query; QueryError (or JoinFlavorError) where it leaves the supported shape."""
    return _Parser(text).query()


def _key(row: Row, columns: list[str]) -> tuple[str, ...] | None:
    values = [row.get(column) for column in columns]
    if any(v is None for v in values):
        return None  # a null key matches nothing
    return tuple(v if isinstance(v, str) else json.dumps(v, sort_keys=True) for v in values)


# ---------------------------------------------------------------------- the parser


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
        self.joins = 0

    # ------------------------------------------------------------------ the grammar

    def query(self) -> Query:
        query = self._pipeline()
        if self._peek().kind != "end":
            self._fail("'|' or the end of the query")
        return query

    def _pipeline(self) -> Query:
        table = self._next()
        if table.kind != "name" or table.text.lower() not in TABLES:
            self._fail(f"a table: {' or '.join(TABLES.values())}", table)
        self._op("|")
        source, first = self._first_where(table.text.lower())
        schema = dict(COLUMNS)
        stages: list[Stage] = [first]
        while self._peek().text == "|":
            self._next()
            stage = self._peek()
            if stage.text == "where":
                self._next()
                stages.append(Where(self._conditions(schema)))
            elif stage.text == "extend":
                self._next()
                columns = self._assignments(schema, aliases_only=True)
                schema.update((name, expr.table_type(schema)) for name, expr in columns)
                stages.append(Extend(columns))
            elif stage.text == "project":
                self._next()
                columns = self._assignments(schema, aliases_only=False)
                schema = {name: expr.table_type(schema) for name, expr in columns}
                stages.append(Project(columns))
            elif stage.text in ("order", "sort"):
                stages.append(self._order(schema))
            elif stage.text == "join":
                join = self._join(schema)
                schema.update((name, t) for (_, name), (_, t) in zip(join.renamed, join.right.schema, strict=True))
                stages.append(join)
            else:
                self._fail("'where', 'extend', 'project', 'join' or 'order by'")
        return Query(source, tuple(stages), tuple(schema.items()))

    def _first_where(self, table: str) -> tuple[Source, Where]:
        self._word("where")
        self._word("type")
        operator = self._next()
        if operator.text not in ("=~", "=="):
            self._fail("'=~' or '=='", operator)
        literal = self._string()
        condition = Condition(Path(("type",)), literal, operator.text == "=~")
        rest: tuple[Condition, ...] = ()
        if self._peek().text == "and":
            self._next()
            rest = self._conditions(COLUMNS)
        return Source(table, literal, operator.text == "=~"), Where((condition, *rest))

    def _conditions(self, schema: dict[str, str]) -> tuple[Condition, ...]:
        conditions = [self._condition(schema)]
        while self._peek().text == "and":
            self._next()
            conditions.append(self._condition(schema))
        return tuple(conditions)

    def _condition(self, schema: dict[str, str]) -> Condition:
        expression = self._expression(schema)
        operator = self._next()
        if operator.text not in ("=~", "=="):
            self._fail("'=~' or '=='", operator)
        return Condition(expression, self._string(), operator.text == "=~")

    def _assignments(self, schema: dict[str, str], *, aliases_only: bool) -> tuple[tuple[str, Expression], ...]:
        columns = [self._assignment(schema, aliases_only)]
        while self._peek().text == ",":
            self._next()
            start = self._peek()
            column = self._assignment(schema, aliases_only)
            if any(name == column[0] for name, _ in columns):
                self._fail(f"distinct column names (KQL would rename the second '{column[0]}')", start)
            columns.append(column)
        return tuple(columns)

    def _assignment(self, schema: dict[str, str], aliases_only: bool) -> tuple[str, Expression]:
        first = self._name("a column name")
        if self._peek().text == "=":
            self._next()
            return first.text, self._expression(schema)
        if aliases_only:
            self._fail("'=' (the sandbox extends only named columns)")
        self.at -= 1  # not an alias: the name starts the expression
        expression = self._expression(schema)
        if not isinstance(expression, Path):
            self._fail("a name for the computed column (name = ...)", first)
        return "_".join(expression.names), expression

    def _expression(self, schema: dict[str, str]) -> Expression:
        token = self._peek()
        if token.kind == "string":
            return Literal(self._string())
        name = self._name("a column name, a function or a string literal")
        if self._peek().text == "(":
            if name.text not in FUNCTIONS:
                self._fail(f"a function the sandbox supports ({', '.join(FUNCTIONS)})", name)
            self._next()
            argument = self._expression(schema)
            self._op(")")
            return Call(name.text, argument)
        self.at -= 1
        return self._path(schema)

    def _path(self, schema: dict[str, str]) -> Path:
        root = self._name("a column name")
        if root.text not in schema:
            self._fail(f"a column of the table at this point ({', '.join(schema)})", root)
        path = [root.text]
        while self._peek().text == ".":
            if schema[root.text] != "object":
                self._fail("a path into a dynamic column", root)
            self._next()
            path.append(self._name("a property name").text)
        return Path(tuple(path))

    def _join(self, left: dict[str, str]) -> Join:
        join = self._next()
        self.joins += 1
        if self.joins > MAX_JOINS:
            self._fail(f"at most {MAX_JOINS} 'join' operators in a query (Resource Graph's limit)", join)
        kind = "innerunique"
        if self._peek().text == "kind":
            self._next()
            self._op("=")
            word = self._name(f"a join kind ({', '.join(JOIN_KINDS)})")
            if word.text.lower() in UNSUPPORTED_JOIN_KINDS:
                raise JoinFlavorError(self.text, word.offset, word.text)
            if word.text not in JOIN_KINDS:
                self._fail(f"a join kind ({', '.join(JOIN_KINDS)})", word)
            kind = word.text
        self._op("(")
        right = self._pipeline()
        self._op(")")
        self._word("on")
        right_schema = dict(right.schema)
        keys = [self._join_key(left, right_schema)]
        while self._peek().text in (",", "and"):
            self._next()
            keys.append(self._join_key(left, right_schema))
        taken = set(left)
        renamed = []
        for column in right_schema:
            name, n = column, 0
            while name in taken:
                n += 1
                name = f"{column}{n}"
            taken.add(name)
            renamed.append((column, name))
        return Join(kind, right, tuple(keys), tuple(renamed), tuple(left))

    def _join_key(self, left: dict[str, str], right: dict[str, str]) -> tuple[str, str]:
        if self._peek().text != "$":
            name = self._name("a join key: a column of both sides, or $left.<column> == $right.<column>")
            if name.text not in left or name.text not in right:
                self._fail("a column of both sides of the join", name)
            return name.text, name.text
        left_key = self._side("left", left)
        self._op("==")
        return left_key, self._side("right", right)

    def _side(self, side: str, schema: dict[str, str]) -> str:
        self._op("$")
        self._word(side)
        self._op(".")
        name = self._name("a column name")
        if name.text not in schema:
            self._fail(f"a column of the join's {side} side ({', '.join(schema)})", name)
        return name.text

    def _order(self, schema: dict[str, str]) -> Order:
        self._next()
        self._word("by")
        key = self._name("'id'")
        if key.text != "id" or "id" not in schema:
            self._fail("'id' (the one sort key the sandbox supports, and a column of the result)", key)
        direction = self._peek()
        if direction.text in ("asc", "desc"):
            self._next()
            return Order(direction.text == "desc")
        return Order(True)  # KQL sorts descending unless told otherwise

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

    def _string(self) -> str:
        token = self._next()
        if token.kind != "string":
            self._fail("a string literal", token)
        return token.text[1:-1]

    def _fail(self, expected: str, token: _Token | None = None) -> Any:
        token = token or self._peek()
        raise QueryError(self.text, token.offset, token.text, f"expected {expected}")
