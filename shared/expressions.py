"""The arithmetic of validation rules (DESIGN §8), read by a hand-written tokenizer and recursive descent.

Nothing here calls `eval`, `compile` or `ast`: the grammar is the whole language, so a rule can never reach
a name, an attribute or a call the grammar does not spell out.

    expression := term (("+" | "-") term)*
    term       := unary (("*" | "/") unary)*
    unary      := "-" unary | atom
    atom       := NUMBER | reference | "previous" "(" reference ")" | "(" expression ")"
    reference  := CODE | CODE ".numerator" | CODE ".denominator"

Limits keep a hostile catalogue edit from costing the aggregator anything: 300 characters, 12 levels of
nesting, numbers of at most 15 digits (no exponent notation at all, so `1e999` is refused as such).
Evaluation is Decimal with 60 significant digits; a division by zero or an overflow makes the value
unknown, and the caller skips the rule for that unit and period.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Context, Decimal, DivisionByZero, InvalidOperation, Overflow, localcontext
from typing import Literal

MAX_LENGTH = 300
MAX_DEPTH = 12
MAX_DIGITS = 15
PARTS = ("numerator", "denominator")

Part = Literal["value", "numerator", "denominator"]
_CONTEXT = Context(prec=60, traps=[DivisionByZero, InvalidOperation, Overflow])


class ExpressionError(ValueError):
    """An expression the grammar or its limits refuse, with what is wrong in words."""


@dataclass(frozen=True, slots=True)
class Ref:
    """One value a rule reads: an indicator's effective value or one of its components, this period or the
    previous native one."""

    code: str
    part: Part = "value"
    previous: bool = False

    def __str__(self) -> str:
        name = self.code if self.part == "value" else f"{self.code}.{self.part}"
        return f"previous({name})" if self.previous else name


@dataclass(frozen=True, slots=True)
class Num:
    value: Decimal


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Node


@dataclass(frozen=True, slots=True)
class BinOp:
    op: Literal["+", "-", "*", "/"]
    left: Node
    right: Node


Node = Num | Ref | Neg | BinOp

_TOKEN = re.compile(r"\s*(?:(?P<number>\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[-+*/().]))")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: Literal["number", "name", "op", "bad", "end"]
    text: str
    at: int


def _tokens(source: str) -> list[_Token]:
    out: list[_Token] = []
    at = 0
    while at < len(source):
        if source[at:].strip() == "":
            break
        match = _TOKEN.match(source, at)
        if match is None or match.end() == at:
            # Refused when the parser reaches it, so `__import__('os')` is refused for its call, not its quote.
            skipped = len(source[at:]) - len(source[at:].lstrip())
            out.append(_Token("bad", source[at + skipped], at + skipped))
            break
        kind = match.lastgroup
        assert kind in ("number", "name", "op")
        out.append(_Token(kind, match.group(kind), match.start(kind)))  # type: ignore[arg-type]
        at = match.end()
    out.append(_Token("end", "", len(source)))
    return out


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokens(source)
        self.i = 0
        self.depth = 0

    @property
    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        if token.kind == "bad":
            raise ExpressionError(f"unexpected character {token.text!r} at position {token.at + 1}")
        self.i += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text:
            found = repr(token.text) if token.kind != "end" else "the end"
            raise ExpressionError(f"expected {text!r} at position {token.at + 1}, found {found}")

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"nested more than {MAX_DEPTH} levels deep")

    def expression(self) -> Node:
        node = self.term()
        while self.peek.text in ("+", "-") and self.peek.kind == "op":
            op = self.take().text
            node = BinOp(op, node, self.term())  # type: ignore[arg-type]
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.peek.text in ("*", "/") and self.peek.kind == "op":
            op = self.take().text
            node = BinOp(op, node, self.unary())  # type: ignore[arg-type]
        return node

    def unary(self) -> Node:
        if self.peek.kind == "op" and self.peek.text == "-":
            self.take()
            self.nested()
            node = Neg(self.unary())
            self.depth -= 1
            return node
        return self.atom()

    def atom(self) -> Node:
        token = self.take()
        if token.kind == "number":
            digits = token.text.replace(".", "")
            if len(digits.lstrip("0")) > MAX_DIGITS:
                raise ExpressionError(f"the number {token.text[:20]}… has more than {MAX_DIGITS} digits")
            return Num(Decimal(token.text))
        if token.kind == "op" and token.text == "(":
            self.nested()
            node = self.expression()
            self.expect(")")
            self.depth -= 1
            return node
        if token.kind == "name":
            if self.peek.text == "(":
                if token.text != "previous":
                    raise ExpressionError(f"{token.text}(…) is not allowed: the only function is previous()")
                self.take()
                ref = self.reference(self.take(), previous=True)
                self.expect(")")
                return ref
            return self.reference(token, previous=False)
        found = repr(token.text) if token.kind != "end" else "the end"
        raise ExpressionError(f"expected a number, an indicator code or '(' at position {token.at + 1}, "
                              f"found {found}")

    def reference(self, token: _Token, *, previous: bool) -> Ref:
        if token.kind != "name" or token.text == "previous":
            raise ExpressionError(f"expected an indicator code at position {token.at + 1}")
        if token.text.startswith("_") or not token.text.islower():
            raise ExpressionError(f"{token.text!r} is not an indicator code (lower-case snake_case)")
        if self.peek.text != ".":
            return Ref(token.text, "value", previous)
        self.take()
        attribute = self.take()
        if attribute.text not in PARTS:
            raise ExpressionError(f".{attribute.text} is not allowed: only .numerator and .denominator")
        if self.peek.text == ".":
            raise ExpressionError("only one attribute may follow an indicator code")
        return Ref(token.text, attribute.text, previous)  # type: ignore[arg-type]


def parse(source: str) -> Node:
    """The tree of one side of a rule, or ExpressionError saying what is wrong and where."""
    if not isinstance(source, str):
        raise ExpressionError("an expression must be text")
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"longer than {MAX_LENGTH} characters")
    if not source.strip():
        raise ExpressionError("empty")
    parser = _Parser(source)
    node = parser.expression()
    rest = parser.peek
    if rest.kind == "bad":
        parser.take()
    if rest.kind != "end":
        raise ExpressionError(f"unexpected {rest.text!r} at position {rest.at + 1}")
    return node


def refs(node: Node) -> Iterator[Ref]:
    """Every value the expression reads, left to right."""
    match node:
        case Ref():
            yield node
        case Neg(operand):
            yield from refs(operand)
        case BinOp(_, left, right):
            yield from refs(left)
            yield from refs(right)
        case Num():
            return


def evaluate(node: Node, value: Callable[[Ref], Decimal]) -> Decimal | None:
    """The expression's value, or None when it has none (a division by zero, an overflow)."""
    try:
        with localcontext(_CONTEXT):
            return _eval(node, value)
    except (ArithmeticError, InvalidOperation):
        return None


def _eval(node: Node, value: Callable[[Ref], Decimal]) -> Decimal:
    match node:
        case Num(number):
            return number
        case Ref():
            return value(node)
        case Neg(operand):
            return -_eval(operand, value)
        case BinOp(op, left, right):
            a, b = _eval(left, value), _eval(right, value)
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if op == "*":
                return a * b
            return a / b
    raise AssertionError(node)  # pragma: no cover - Node is closed
