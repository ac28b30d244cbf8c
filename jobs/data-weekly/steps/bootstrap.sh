# bootstrap (setup): watchdog, toolchain, fresh clone, config.yaml.
# SSM runs this as root, so no sudo.

# 1. Watchdog first, so the instance cannot outlive its budget even if
#    everything below hangs. A second bootstrap on the same instance keeps the
#    timer already armed (and its original deadline).
if systemctl is-active --quiet spotstep-watchdog.timer; then
    echo "bootstrap: watchdog already armed"
else
    systemd-run --unit=spotstep-watchdog --description="spotstep hard timeout" \
        --on-active="${SPOTSTEP_MAX_RUNTIME}s" /usr/sbin/shutdown -h now
    echo "bootstrap: watchdog armed, shutdown in ${SPOTSTEP_MAX_RUNTIME}s"
fi

# 2. Toolchain. The AL2023 AMI has no python3.12; gcc and python3.12-devel are
#    for wheels that build from source.
dnf install -y -q python3.12 python3.12-pip python3.12-devel git gcc
command -v python3.12 >/dev/null || { echo "ERROR: python3.12 not found after dnf install"; exit 1; }
echo "bootstrap: using $(python3.12 --version)"

# 3. Shallow clone of the branch. Always a clean clone, so a re-run never
#    works on a half-cloned or stale tree.
repo="$SPOTSTEP_WORKDIR/repo"
rm -rf "$repo"
git clone --depth 1 --branch "$SPOTSTEP_BRANCH" "$REPO_URL" "$repo"
echo "bootstrap: cloned $REPO_URL@$SPOTSTEP_BRANCH ($(git -C "$repo" rev-parse --short HEAD))"

# 4. config.yaml, staged by spotstep for this run. It goes where
#    weekly_collector.load_config looks first: $HOME/alpha-engine-config/data/
#    (the old launcher copied it there). The repo's own config/ folder is not
#    on that search path.
config_dir="$HOME/alpha-engine-config/data"
mkdir -p "$config_dir"
aws s3 cp "${SPOTSTEP_STAGING%/}/config.yaml" "$config_dir/config.yaml" --only-show-errors
echo "bootstrap: config.yaml -> $config_dir/config.yaml"
