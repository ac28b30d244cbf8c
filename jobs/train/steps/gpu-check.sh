# gpu-check (setup): name the GPU when the instance has one (a local instance has none).
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L
else
    echo "gpu-check: no nvidia-smi on this instance: training runs on the CPU"
fi
