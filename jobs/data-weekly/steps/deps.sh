# deps (setup): install the repo's Python requirements.
cd "$SPOTSTEP_WORKDIR/repo"

pip_log=/tmp/spotstep-pip-install.log
"$PYTHON_BIN" -m pip install --no-warn-script-location -r requirements.txt 2>&1 | tee "$pip_log"

# pip < 23.3 (AL2023 ships 23.2.1) only warns when it drops a requested extra,
# and still exits 0. That leaves an incomplete environment, so fail here.
if grep -E "^WARNING: .*does not provide the extra" "$pip_log"; then
    echo "ERROR: pip dropped a requested extra (above); the environment is incomplete"
    exit 1
fi
echo "deps: requirements installed"
