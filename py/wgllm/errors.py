"""The project's own error types: each names the file, tensor or option and what was expected."""


class ModelFormatError(ValueError):
    """A model, adapter or tokenizer file that cannot be used as it is.

    The message always names the file (and the tensor or key when there is one) and says what
    was expected, so a user can tell which input to fix.
    """


class ConversionError(ValueError):
    """A checkpoint that cannot be converted: a missing file, tensor or config field."""
