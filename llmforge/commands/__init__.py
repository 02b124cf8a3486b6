"""Subcommands whose options outgrew cli.py: each module adds its arguments and runs the command.

Importing one must stay cheap (argparse only): the parser is built for every `llmforge` call.
"""
