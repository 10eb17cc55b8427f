"""A local OpenAI-compatible chat-completions server around llama.cpp (Qwen2.5-Coder-1.5B).

Modules: settings (MODEL_* env) · weights (locate/assemble/verify the GGUF) · prompt (ChatML,
pure) · grammar (schema → GBNF: text or one tool call) · output (raw text → OpenAI message) ·
llamacpp (the only door to llama_cpp) · engine (one Llama, one generation) · runtime (load
state + lock) · handler (request → response) · server (FastAPI routes).
"""
