# leak (workload): prints its secret in three ways and its SHA-256 (so the test can check it
# arrived intact), then exits 7.
echo "$LEAK_TOKEN"
echo "leak: embedded [${LEAK_TOKEN}] in text"
(set -x; : "$LEAK_TOKEN")
echo "leak: sha256 $(printf '%s' "$LEAK_TOKEN" | sha256sum | cut -d' ' -f1)"
echo "leak: about to exit 7"
exit 7
