"""The kinds of intervention rate a method counts (docs/methods.md §3): which events over
which positions. A method declares its kind (``Strategy.ir_kind``); records, the summary
and the gate read the kind's name, so this module imports nothing.
"""

# The intervention rate each method's authors' code reports (docs/methods.md §3).
IR_ROUNDS = "rounds / base-written tokens"  # intervention_count / total_tokens_generated
IR_UNCERTAIN = "uncertain positions / positions"  # intervention_count / token_count
# The reference protocol: its loop's own counts (decoding/rounds.py).
IR_REFERENCE = "rounds / re-encoded base completion tokens"
# Its completions' length: the last base turn or guide completion may pass the budget by one.
REFERENCE_COMPLETION_TOKENS = 16
# The kinds whose numerator counts rounds (a round's words and the base's tokens are
# different parts of the response).
ROUND_KINDS = (IR_ROUNDS, IR_REFERENCE)
