"""How a row's prompt reads to the models: the instruction, then the optional input on its own line."""


def source_text(instruction: str, input_text: str = "") -> str:
    return f"{instruction}\n{input_text}" if input_text else instruction
