"""Subcommands whose options outgrew cli.py: each module adds its arguments and runs the command.

Importing one must stay cheap (argparse only): the parser is built for every `llmforge` call.
"""

from llmforge.errors import UserError


def whole_numbers(text: str, option: str, example: str, minimum: int | None = None, distinct: bool = False,
                  ) -> list[int]:
    """A comma-separated option of whole numbers (--pass-at 1,4,8, --seeds 42,1,2), or a UserError naming it."""
    try:
        numbers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        numbers = []
    if (not numbers or (minimum is not None and min(numbers) < minimum)
            or (distinct and len(set(numbers)) != len(numbers))):
        wanted = ("distinct " if distinct else "") + "whole numbers" + (f" >= {minimum}" if minimum is not None else "")
        raise UserError(f"{option} '{text}': give {wanted} separated by commas, e.g. {option} {example}.")
    return numbers
