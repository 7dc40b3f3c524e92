"""Reading infra/'s Bicep in tests: parse it with tree-sitter-bicep, walk it, and evaluate the expression subset
the templates use, so that a test can ask what a template would deploy for given parameters.

Two parsers read the Bicep (tree-sitter here, checkov's pycep in tests/test_infra.py), and both predate syntax this
template uses, so the text is adjusted first, the same way every time (`for_parsers`):
- `extension microsoftGraphV1` (the Graph modules) became a keyword in Bicep 0.30; the tree-sitter grammar and
  checkov's pycep parser reject it. The statement is commented out, on its own line, so line numbers (and checkov's
  skip comments) stay put.
- A .bicepparam `param name = value` has no type, which the grammar requires; it is read as `var name = value`,
  which has the same expression grammar.
- checkov's pycep grammar lists the functions it knows by name, and `objectKeys` (used on an existing system topic's
  identities) is not among them; it is renamed to `string`, which takes the same single argument, for both parsers.

`evaluate` knows literals, parameters (from a scope), variables, objects, arrays, `[for x in xs: ...]`, member and
index access, `!`, `&&`, `||`, `==`, `!=`, `>`, `? :`, lambdas, and the functions in `_FUNCTIONS`. `uniqueString`
and `guid` are stand-ins with the real ones' shape (deterministic, 13 characters; a GUID), not ARM's hashes.
Anything else raises NotImplementedError: a test never guesses what it cannot evaluate.
"""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import tree_sitter
import tree_sitter_bicep

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"

EXTENSION_STATEMENT = re.compile(r"^extension[ \t]+[A-Za-z_][A-Za-z0-9_]*[ \t]*$", re.MULTILINE)
_BICEPPARAM_PARAM = re.compile(r"^param([ \t]+[A-Za-z_][A-Za-z0-9_]*[ \t]*=)", re.MULTILINE)
_UNKNOWN_TO_PYCEP = re.compile(r"\bobjectKeys\(")

Node = tree_sitter.Node


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def for_parsers(path: Path, text: str) -> str:
    """The file's text with the syntax the parsers predate rewritten (module docstring)."""
    text = EXTENSION_STATEMENT.sub(lambda m: "// " + m.group(0), text)
    text = _UNKNOWN_TO_PYCEP.sub("string(", text)
    if path.suffix == ".bicepparam":
        text = _BICEPPARAM_PARAM.sub(r"var\1", text)
    return text


@functools.cache
def _parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


def parse(path: Path, text: str | None = None) -> Node:
    source = path.read_text(encoding="utf-8") if text is None else text
    return _parser().parse(for_parsers(path, source).encode("utf-8")).root_node


def syntax_errors(root: Node) -> list[str]:
    found = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            kind = "missing " + node.type if node.is_missing else "unexpected text"
            line, column = node.start_point
            found.append(f"line {line + 1}, column {column + 1}: {kind} {node.text.decode()[:60]!r}")
        elif node.has_error:
            stack.extend(node.children)
    return sorted(found)


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.named_children:
        yield from walk(child)


def literal(node: Node) -> str | None:
    """The value of a plain string literal; None for anything else (interpolation, references)."""
    if node.type != "string":
        return None
    parts = []
    for child in node.named_children:
        if child.type == "string_content":
            parts.append(child.text.decode())
        elif child.type == "escape_sequence":
            parts.append(child.text.decode()[1:])
        else:
            return None
    return "".join(parts)


def _key(prop: Node) -> str:
    key = prop.named_children[0]
    return literal(key) if key.type == "string" else key.text.decode()


def properties(obj: Node) -> dict[str, Node]:
    return {_key(p): p.named_children[-1] for p in obj.named_children if p.type == "object_property"}


def variables(root: Node) -> dict[str, Node]:
    return {d.named_children[0].text.decode(): d.named_children[-1]
            for d in root.named_children if d.type == "variable_declaration"}


def resources(root: Node, type_prefix: str) -> Iterator[tuple[str, Node]]:
    """(symbolic name, body object) of each resource of that type, conditional or looped too."""
    for declaration in root.named_children:
        if declaration.type != "resource_declaration":
            continue
        type_string = literal(declaration.named_children[1]) or ""
        if not type_string.lower().startswith(type_prefix.lower()):
            continue
        bodies = [n for n in walk(declaration) if n.type == "object"]
        if bodies:
            yield declaration.named_children[0].text.decode(), bodies[0]


def string_list(node: Node, names: dict[str, Node], where: str) -> list[str]:
    """A literal array of literal strings, through one variable reference; fails otherwise."""
    if node.type == "identifier" and node.text.decode() in names:
        node = names[node.text.decode()]
    assert node.type == "array", f"{where}: expected a literal array, got {node.text.decode()[:80]!r}"
    values = []
    for element in node.named_children:
        if element.type == "comment":
            continue
        value = literal(element)
        assert value is not None, f"{where}: cannot verify the non-literal entry {element.text.decode()!r}"
        values.append(value)
    return values


def app_settings() -> dict[str, Node]:
    """Every `{ name: '...', value: ... }` in an `appSettings: [...]` array under infra/."""
    settings: dict[str, Node] = {}
    for path in bicep_files():
        for node in walk(parse(path)):
            if node.type != "object_property" or _key(node) != "appSettings":
                continue
            array = node.named_children[-1]
            assert array.type == "array", f"{path.name}: appSettings must be a literal array"
            for entry in array.named_children:
                if entry.type != "object":
                    continue
                props = properties(entry)
                name = literal(props["name"])
                assert name is not None, f"{path.name}: app setting {props['name'].text.decode()!r} is not a literal"
                assert name not in settings, f"app setting {name} is set twice"
                settings[name] = props["value"]
    return settings


def declarations(root: Node, kind: str) -> dict[str, Node]:
    """Declarations of one kind ("module", "resource", "parameter", "variable", "output") by name."""
    return {d.named_children[0].text.decode(): d for d in root.named_children if d.type == f"{kind}_declaration"}


def is_existing(declaration: Node) -> bool:
    """`resource x 'T@v' existing = ...` (the grammar has no node for the keyword)."""
    head = declaration.text.decode().split("=", 1)[0]
    return re.search(r"\bexisting\s*$", head) is not None


def body(declaration: Node) -> Node:
    """The object of a resource or module declaration, conditional or looped."""
    return next(n for n in walk(declaration) if n.type == "object")


def condition(declaration: Node) -> Node | None:
    """The expression of `= if (...)`, or None for an unconditional declaration."""
    for child in declaration.named_children:
        if child.type == "if_statement":
            return child.named_children[0]
    return None


def identifiers(node: Node) -> set[str]:
    return {n.text.decode() for n in walk(node) if n.type == "identifier"}


def decorated(declaration: Node, decorator: str) -> bool:
    previous = declaration.prev_named_sibling
    return previous is not None and previous.type == "decorators" and any(
        d.text.decode().startswith(f"@{decorator}(") for d in previous.named_children)


def decorator_argument(declaration: Node, decorator: str) -> str | None:
    """The text of `@decorator(<argument>)` before a declaration, or None."""
    previous = declaration.prev_named_sibling
    if previous is None or previous.type != "decorators":
        return None
    for found in previous.named_children:
        text = found.text.decode()
        if text.startswith(f"@{decorator}(") and text.endswith(")"):
            return text[len(decorator) + 2:-1]
    return None


def resource_type(declaration: Node) -> str:
    """A resource declaration's type, lower-cased, without the API version."""
    return (literal(declaration.named_children[1]) or "").split("@")[0].lower()


def parameter_default(root: Node, name: str) -> Node | None:
    """The default value expression of a parameter, or None when it has none."""
    declaration = declarations(root, "parameter")[name]
    last = declaration.named_children[-1]
    return None if last.type == "type" else last


# ------------------------------------------------------------------------------------------ evaluation


def _unique_string(*values: str) -> str:
    return hashlib.sha256("|".join(values).encode()).hexdigest()[:13]


def _guid(*values: str) -> str:
    return str(uuid.UUID(hashlib.sha256("|".join(values).encode()).hexdigest()[:32]))


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "empty": lambda v: len(v) == 0, "toLower": str.lower, "toUpper": str.upper, "trim": str.strip,
    "bool": lambda v: v if isinstance(v, bool) else {"true": True, "false": False}[str(v).lower()],
    "int": int, "string": str, "split": lambda text, sep: text.split(sep), "join": lambda items, sep: sep.join(items),
    "concat": lambda *parts: [x for part in parts for x in part] if parts and isinstance(parts[0], list)
    else "".join(parts),
    "union": lambda *parts: list(dict.fromkeys(x for part in parts for x in part)) if isinstance(parts[0], list)
    else {k: v for part in parts for k, v in part.items()},
    "contains": lambda container, item: item in container,
    "filter": lambda items, keep: [x for x in items if keep(x)],
    "map": lambda items, change: [change(x) for x in items],
    "uniqueString": _unique_string, "guid": _guid,
}


def evaluate(node: Node, scope: dict[str, Any], names: dict[str, Node]) -> Any:
    """The value of an expression. `scope` holds parameter values and, under "<function>()", what a deployment
    function returns (a value, or a callable given the arguments); `names` are the file's variable declarations,
    evaluated on use."""
    kind = node.type
    if kind == "parenthesized_expression":
        return evaluate(node.named_children[0], scope, names)
    if kind == "identifier":
        name = node.text.decode()
        if name in scope:
            return scope[name]
        if name in names:
            return evaluate(names[name], scope, names)
        raise NotImplementedError(f"unknown name {name!r}")
    if kind == "string":
        parts = []
        for child in node.named_children:
            if child.type == "string_content":
                parts.append(child.text.decode())
            elif child.type == "escape_sequence":
                parts.append(child.text.decode()[1:])
            else:  # interpolation
                parts.append(str(evaluate(child.named_children[0], scope, names)))
        return "".join(parts)
    if kind in ("boolean", "true", "false"):
        return node.text.decode() == "true"
    if kind == "number":
        return int(node.text.decode())
    if kind == "null":
        return None
    if kind == "array":
        return _array(node, scope, names)
    if kind == "object":
        return {_key(p): evaluate(p.named_children[-1], scope, names)
                for p in node.named_children if p.type == "object_property"}
    if kind == "for_statement":
        return _for(node, scope, names)
    if kind == "unary_expression" and node.text.decode().startswith("!"):
        return not evaluate(node.named_children[0], scope, names)
    if kind == "ternary_expression":
        test, yes, no = node.named_children
        return evaluate(yes if evaluate(test, scope, names) else no, scope, names)
    if kind == "binary_expression":
        return _binary(node, scope, names)
    if kind == "member_expression":
        owner, member = node.named_children[0], node.named_children[-1].text.decode()
        return evaluate(owner, scope, names)[member]
    if kind == "subscript_expression":
        owner, index = node.named_children[0], node.named_children[-1]
        return evaluate(owner, scope, names)[evaluate(index, scope, names)]
    if kind == "lambda_expression":
        parameter, expression = node.named_children[0].text.decode(), node.named_children[-1]
        return lambda value: evaluate(expression, {**scope, parameter: value}, names)
    if kind == "call_expression":
        function = node.named_children[0].text.decode()
        args = [evaluate(a, scope, names) for a in node.named_children[1].named_children]
        if f"{function}()" in scope:  # a deployment function the test decides: a value, or a callable
            given = scope[f"{function}()"]
            return given(*args) if callable(given) else given
        if function in _FUNCTIONS:
            return _FUNCTIONS[function](*args)
    raise NotImplementedError(f"cannot evaluate {kind} {node.text.decode()[:80]!r}")


def _array(node: Node, scope: dict[str, Any], names: dict[str, Node]) -> list[Any]:
    if node.named_children and node.named_children[0].type == "for_statement":
        return _for(node.named_children[0], scope, names)
    elements = [element for element in node.named_children if element.type != "comment"]
    if any(element.text.decode().startswith("(") for element in elements):
        # Inside an object, tree-sitter-bicep splits an element such as `subscription().id` in two (`subscription`,
        # then `().id`); the same array on its own, as a variable's value, parses whole.
        (reparsed,) = variables(parse(Path("array.bicep"), "var array = " + node.text.decode() + "\n")).values()
        if reparsed.type == "array" and not any(e.text.decode().startswith("(") for e in reparsed.named_children):
            return _array(reparsed, scope, names)
        raise NotImplementedError(f"cannot read the array {node.text.decode()[:80]!r}")
    return [evaluate(element, scope, names) for element in elements]


def _for(node: Node, scope: dict[str, Any], names: dict[str, Node]) -> list[Any]:
    """`[for x in xs: body]` (the grammar's for_statement: the loop variable, the items, the body)."""
    variable, items, expression = node.named_children[0], node.named_children[1], node.named_children[-1]
    if variable.type != "identifier":
        raise NotImplementedError(f"only `for x in xs` loops: {node.text.decode()[:80]!r}")
    return [evaluate(expression, {**scope, variable.text.decode(): item}, names)
            for item in evaluate(items, scope, names)]


def _binary(node: Node, scope: dict[str, Any], names: dict[str, Node]) -> Any:
    left, right = node.named_children
    operator = node.text.decode()[left.end_byte - node.start_byte:right.start_byte - node.start_byte].strip()
    if operator == "&&":
        return evaluate(left, scope, names) and evaluate(right, scope, names)
    if operator == "||":
        return evaluate(left, scope, names) or evaluate(right, scope, names)
    a, b = evaluate(left, scope, names), evaluate(right, scope, names)
    comparisons = {"==": lambda: a == b, "!=": lambda: a != b, ">": lambda: a > b, "<": lambda: a < b,
                   ">=": lambda: a >= b, "<=": lambda: a <= b, "=~": lambda: str(a).lower() == str(b).lower()}
    if operator in comparisons:
        return comparisons[operator]()
    raise NotImplementedError(f"operator {operator!r}")


# ------------------------------------------------------------------------------------------ what main.bicep deploys

SAMPLE_ENVIRONMENT = {"environmentName": "env", "resourceToken": "tok", "tenant()": {"tenantId": "tid"}}


def api_application(stage_params: dict[str, Any]) -> dict[str, Any]:
    """The application body modules/api-app.bicep declares for one stage's parameters, as the Graph extension
    sends it (`uniqueName` included)."""
    root = parse(INFRA / "modules" / "api-app.bicep")
    (_, found), = list(resources(root, "Microsoft.Graph/applications@"))
    return evaluate(found, stage_params, variables(root))


def api_application_stages(scope: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """main.bicep's modules/api-app.bicep modules in deployment order (each after the ones it depends on, through
    dependsOn or its parameters), as the parameters each passes, for a sample environment."""
    main = parse(INFRA / "main.bicep")
    names = variables(main)
    modules = {name: d for name, d in declarations(main, "module").items()
               if literal(d.named_children[1]) == "modules/api-app.bicep"}

    def after(declaration: Node) -> set[str]:
        props = properties(body(declaration))
        return {name for key in ("dependsOn", "params") if key in props
                for name in identifiers(props[key]) & set(modules)}

    ordered: list[str] = []
    while len(ordered) < len(modules):
        ready = [name for name, d in modules.items() if name not in ordered and after(d) <= set(ordered)]
        assert ready, "the api-app.bicep modules depend on each other in a cycle"
        ordered.append(sorted(ready)[0])
    return [evaluate(properties(body(modules[name]))["params"], scope or SAMPLE_ENVIRONMENT, names)
            for name in ordered]
