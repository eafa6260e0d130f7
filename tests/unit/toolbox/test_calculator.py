"""The calculator evaluates arithmetic and nothing else, within bounds."""

from __future__ import annotations

import pytest

from pipeline.errors import CalculatorError
from pipeline.toolbox.calculator import MAX_EXPRESSION_CHARS, evaluate


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("12*7", 84),
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("7 % 4", 3),
        ("2 ** 10", 1024),
        ("-3 + +5", 2),
        ("-(2 ** 2)", -4),
        ("1.5 * 4", 6.0),
        ("2 ** -1", 0.5),
        ("1e3 + 1", 1001.0),
        ("  42  ", 42),
    ],
)
def test_arithmetic(expression: str, value: float) -> None:
    result = evaluate(expression)
    assert result == value
    assert type(result) is type(value)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("x + 1", "names are not allowed"),
        ("__import__('os').system('true')", "function calls are not allowed"),
        ("abs(-1)", "function calls are not allowed"),
        ("(1).__class__", "attribute access is not allowed"),
        ("[1, 2][0]", "subscripts are not allowed"),
        ("2 ^ 3", "use **"),
        ("1 << 10", "LShift is not allowed"),
        ("True + 1", "True is not a number"),
        ("'a' * 3", "'a' is not a number"),
        ("1j * 2", "1j is not a number"),
        ("lambda: 1", "Lambda is not allowed"),
        ("1 if 1 else 2", "IfExp is not allowed"),
        ("1 < 2", "Compare is not allowed"),
        ("[x for x in (1, 2)]", "ListComp is not allowed"),
    ],
)
def test_rejects_anything_but_arithmetic(expression: str, reason: str) -> None:
    with pytest.raises(CalculatorError, match="only numbers") as caught:
        evaluate(expression)
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("9 ** 9 ** 9", "exponent 387420489 is larger than 1000"),
        ("2 ** 999 * 2 ** 999 * 2 ** 999 * 2 ** 999 * 2 ** 999", "too large"),
        ("10 ** 1000 * 10 ** 1000", "too large"),
        ("12345678901234567890 ** 999", "too large"),
        ("10.0 ** 400", "too large"),
        ("1e308 * 10", "not a finite number"),
        ("1 / 0", "division by zero"),
        ("1 % 0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("(-8) ** 0.5", "not a real number"),
    ],
)
def test_bounds_give_clear_errors(expression: str, reason: str) -> None:
    with pytest.raises(CalculatorError, match=reason):
        evaluate(expression)


def test_syntax_errors_and_sizes() -> None:
    with pytest.raises(CalculatorError, match="not an arithmetic expression"):
        evaluate("1 +")
    with pytest.raises(CalculatorError, match="give an arithmetic expression"):
        evaluate("   ")
    with pytest.raises(CalculatorError, match="longer than"):
        evaluate("1+" * MAX_EXPRESSION_CHARS + "1")
    with pytest.raises(CalculatorError, match="more than 200 parts"):
        evaluate("+".join(["1"] * 150))
    with pytest.raises(CalculatorError, match="not an arithmetic expression"):
        evaluate("import os")
