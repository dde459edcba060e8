#!/usr/bin/env bash
# Installs llama-cpp-python into the active Python environment as a portable build.
#
# pip compiles llama.cpp for the CPU it builds on (-march=native). On some CPUs that
# build crashes: on an Intel Xeon with AVX-512 and AMX, llama-cpp-python 0.3.36 built
# natively segfaults in llama_decode on any batch of more than one token, while the
# same source built for x86-64-v3 (AVX2, FMA, F16C, BMI2) runs. So on x86_64 we build
# for x86-64-v3, which any x86 server of the last decade runs, and keep the wheel in a
# cache folder named after the version and the flags (pip's own wheel cache would hand
# back a native build made earlier on the same machine). Elsewhere pip's default build
# is used.
set -euo pipefail

VERSION="${SLEEPTIME_LLAMA_VERSION:-0.3.36}"
PY=python  # the active environment (the venv the README and test.sh activate)

if [ "$(uname -m)" != "x86_64" ]; then
    "$PY" -m pip install -q "llama-cpp-python==$VERSION"
    exit 0
fi

FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/sleeptime/wheels/llama-cpp-python-$VERSION-x86-64-v3"
if ! ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $VERSION for x86-64-v3 (about 5 minutes on 2 cores, once) ..."
    mkdir -p "$CACHE"
    CMAKE_ARGS="$FLAGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
        "$PY" -m pip wheel -q --no-deps --no-cache-dir --no-binary llama-cpp-python \
        "llama-cpp-python==$VERSION" -w "$CACHE"
fi
# --only-binary: the index has only the source, so pip must take our wheel (and the
# runtime dependencies from the index), never a native build from its own cache;
# --force-reinstall of the wheel alone replaces a native build already in the venv
"$PY" -m pip install -q --find-links "$CACHE" --only-binary llama-cpp-python \
    "llama-cpp-python==$VERSION"
"$PY" -m pip install -q --force-reinstall --no-deps "$CACHE"/llama_cpp_python-"$VERSION"-*.whl
