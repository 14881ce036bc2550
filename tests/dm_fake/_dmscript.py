"""A deliberately small DM-script interpreter for the fake ``DigitalMicrograph`` module.

Real ``DM.ExecuteScriptString`` compiles and runs any DM-script. The bridge sends only short,
regular scripts (declarations, calls, and ``GetPersistentTagGroup().TagGroupSetTagAsNumber``
to hand values back), so this interpreter understands exactly that subset and fails the way
DM fails otherwise: ``RuntimeError("Error in line N\\n<reason>")`` -- the message shape that
execdmscript parses from real DM. Anything outside the subset (an unknown function, a syntax
this file does not know) is an error, never silently ignored, so a typo in the backend's
scripts fails the tests.

Grammar (statements separated by newlines or ``;``; ``//`` comments)::

    number a, b                      declare numbers (0)
    image img := EXPR                declare an image
    EXPR                             a call, e.g. IFSetEnergyLoss(12.5)
    GetPersistentTagGroup().TagGroupSetTagAsNumber("label", EXPR)

``EXPR`` is a number, a string, a variable, or ``Function(EXPR, ...)``. Function names are
case-insensitive, as in DM-script. Functions listed with reference parameters assign to the
variables passed in those positions.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Sequence, Tuple

#: name (lower case) -> (implementation, positions of reference parameters)
FunctionTable = Dict[str, Tuple[Callable[..., Any], Sequence[int]]]

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_IDENT = re.compile(r"^[A-Za-z_]\w*$")
_CALL = re.compile(r"^([A-Za-z_]\w*)\s*\((.*)\)$", re.S)
_PERSIST = re.compile(r"^GetPersistentTagGroup\(\s*\)\s*\.\s*TagGroupSetTagAsNumber\s*\((.*)\)$")


class ScriptError(Exception):
    """A problem in one statement; becomes DM's ``RuntimeError`` with the line number."""


def split_args(text: str) -> List[str]:
    """Split ``a, f(b, c), "x,y"`` at top-level commas."""
    args, depth, current, quoted = [], 0, [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if not quoted and ch in "([":
            depth += 1
        elif not quoted and ch in ")]":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            args.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    tail = "".join(current).strip()
    if tail or args:
        args.append(tail)
    if depth != 0 or quoted:
        raise ScriptError(f"unbalanced brackets or quotes in {text!r}")
    return args


def run_script(
    source: str,
    functions: FunctionTable,
    persist: Callable[[str, float], None],
) -> List[str]:
    """Run ``source``; return the names of the functions it called, in order.

    Raises:
        RuntimeError: ``"Error in line N\\n..."`` like DM.
    """
    variables: Dict[str, Any] = {}
    called: List[str] = []

    def evaluate(expr: str) -> Any:
        expr = expr.strip()
        if _NUMBER.match(expr):
            return float(expr)
        if len(expr) >= 2 and expr[0] == expr[-1] == '"':
            return expr[1:-1]
        if _IDENT.match(expr):
            key = expr.lower()
            if key not in variables:
                raise ScriptError(f"Variable '{expr}' has not been declared")
            return variables[key]
        match = _CALL.match(expr)
        if not match:
            raise ScriptError(f"Syntax error in '{expr}'")
        name, raw_args = match.group(1), split_args(match.group(2))
        try:
            fn, refs = functions[name.lower()]
        except KeyError:
            raise ScriptError(f"Unknown function '{name}'") from None
        values = [raw if i in refs else evaluate(raw) for i, raw in enumerate(raw_args)]
        for i in refs:
            if i >= len(raw_args) or raw_args[i].lower() not in variables:
                raise ScriptError(f"{name}: argument {i + 1} must be a declared variable")
        called.append(name)
        try:
            result = fn(*values)
        except TypeError as exc:
            raise ScriptError(f"{name}: wrong number or type of arguments ({exc})") from None
        if refs:
            outs = result if isinstance(result, tuple) else (result,)
            for i, value in zip(refs, outs):
                variables[raw_args[i].lower()] = value
            return None
        return result

    lines = source.split("\n")
    for line_number, line in enumerate(lines, start=1):
        code = line.split("//", 1)[0]
        for statement in code.split(";"):
            statement = statement.strip()
            if not statement:
                continue
            try:
                _run_statement(statement, variables, evaluate, persist)
            except ScriptError as exc:
                raise RuntimeError(f"Error in line {line_number}\n{exc}") from None
    return called


def _run_statement(
    statement: str,
    variables: Dict[str, Any],
    evaluate: Callable[[str], Any],
    persist: Callable[[str, float], None],
) -> None:
    words = statement.split(None, 1)
    if words[0] == "number" and len(words) == 2:
        for name in split_args(words[1]):
            if not _IDENT.match(name):
                raise ScriptError(f"Bad variable name '{name}'")
            variables[name.lower()] = 0.0
        return
    if words[0] == "image" and len(words) == 2 and ":=" in words[1]:
        name, expr = (part.strip() for part in words[1].split(":=", 1))
        if not _IDENT.match(name):
            raise ScriptError(f"Bad variable name '{name}'")
        variables[name.lower()] = evaluate(expr)
        return
    match = _PERSIST.match(statement)
    if match:
        args = split_args(match.group(1))
        if len(args) != 2:
            raise ScriptError("TagGroupSetTagAsNumber takes a path and a number")
        label, value = evaluate(args[0]), evaluate(args[1])
        if not isinstance(label, str) or not isinstance(value, (int, float)):
            raise ScriptError("TagGroupSetTagAsNumber(string path, number value)")
        persist(label, float(value))
        return
    evaluate(statement)
