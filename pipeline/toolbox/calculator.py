"""A safe arithmetic evaluator: numbers, + - * / // % **, unary signs and parentheses.

The expression is parsed with :mod:`ast` and only arithmetic nodes are walked: no
names, calls, attributes, subscripts or comprehensions, so nothing but arithmetic can
run. Sizes are bounded so an expression cannot eat the CPU or memory (``9**9**9``).
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

from pipeline.errors import CalculatorError

MAX_EXPRESSION_CHARS = 500
MAX_NODES = 200
MAX_EXPONENT = 1000
MAX_INT_BITS = 4096  # about 1233 decimal digits

Number = int | float

_BINARY: dict[type[ast.operator], tuple[str, Callable[[Number, Number], Number]]] = {
    ast.Add: ("+", operator.add),
    ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul),
    ast.Div: ("/", operator.truediv),
    ast.FloorDiv: ("//", operator.floordiv),
    ast.Mod: ("%", operator.mod),
    ast.Pow: ("**", operator.pow),
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_HINTS: dict[type[ast.AST], str] = {
    ast.BitXor: "'^' is not a power here; use ** (2**10)",
    ast.Name: "names are not allowed, only numbers",
    ast.Call: "function calls are not allowed",
    ast.Attribute: "attribute access is not allowed",
    ast.Subscript: "subscripts are not allowed",
}


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression, or CalculatorError saying why not."""
    if not isinstance(expression, str) or not expression.strip():
        raise CalculatorError("give an arithmetic expression, for example 12*7")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise CalculatorError(f"not an arithmetic expression: {exc.msg}") from None
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > MAX_NODES:
        raise CalculatorError(f"the expression has more than {MAX_NODES} parts")
    try:
        value = _eval(tree.body)
    except ZeroDivisionError:
        raise CalculatorError("division by zero") from None
    except OverflowError:
        raise CalculatorError("the result is too large") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("the result is not a finite number")
    return value


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CalculatorError(
                f"only numbers, + - * / // % ** and parentheses are allowed: "
                f"{value!r} is not a number"
            )
        return _checked(value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _checked(_UNARY[type(node.op)](_eval(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        symbol, apply = _BINARY[type(node.op)]
        left, right = _eval(node.left), _eval(node.right)
        if symbol == "**":
            _check_power(left, right)
        return _checked(apply(left, right))
    kind = type(node.op) if isinstance(node, ast.BinOp | ast.UnaryOp) else type(node)
    hint = _HINTS.get(kind, f"{kind.__name__} is not allowed")
    raise CalculatorError(f"only numbers, + - * / // % ** and parentheses are allowed: {hint}")


def _check_power(base: Number, exponent: Number) -> None:
    if abs(exponent) > MAX_EXPONENT:
        raise CalculatorError(f"the exponent {exponent} is larger than {MAX_EXPONENT}")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        bits = base.bit_length() * exponent
        if bits > MAX_INT_BITS:
            raise CalculatorError(
                f"{base}**{exponent} is too large (more than {MAX_INT_BITS} bits)"
            )
    if base == 0 and exponent < 0:
        raise ZeroDivisionError
    if isinstance(base, int | float) and base < 0 and not float(exponent).is_integer():
        raise CalculatorError("a negative number to a fractional power is not a real number")


def _checked(value: Number) -> Number:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalculatorError(f"the result is too large (more than {MAX_INT_BITS} bits)")
    if isinstance(value, complex):  # pragma: no cover - excluded by _check_power
        raise CalculatorError("the result is not a real number")
    return value
