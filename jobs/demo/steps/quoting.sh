# quoting (workload): hostile quoting that must reach the instance verbatim.
# Each case builds a string one way and compares it with the same text written
# another way (ANSI-C $'...', other quotes, \x escapes). Any change to the
# script on its way here makes a comparison fail, and the step exits 1.
echo "quoting ran" >> "$SPOTSTEP_WORKDIR/state/ran.log"

failures=0
checks=0
check() {   # check NAME GOT WANT
    checks=$((checks + 1))
    if [ "$2" == "$3" ]; then
        printf 'quoting: ok   %s\n' "$1"
    else
        failures=$((failures + 1))
        printf 'quoting: FAIL %s\n  got:  [%s]\n  want: [%s]\n' "$1" "$2" "$3"
    fi
}

# Single quotes inside double quotes.
check "single-in-double" "it's a 'test' (isn't it?)" $'it\'s a \'test\' (isn\'t it?)'

# The '\'' idiom: close, escaped quote, reopen.
check "close-escape-reopen" 'don'\''t '\''panic'\''' "don't 'panic'"

# Nested $(...) whose inner commands contain single quotes and a ')'.
nested=$(echo "outer [$(printf '%s' 'a ) b')] [$(echo "c 'd' $(printf '%s' 'e'\''f')")]")
check "nested-substitution" "$nested" "outer [a ) b] [c 'd' e'f]"

# Quoted heredoc delimiter: nothing expands.
quoted_doc=$(cat <<'QUOTED_END'
$HOME ${PATH} $(id -u) `id -u` 'single' "double" \n \\ 100%
QUOTED_END
)
check "heredoc-quoted" "$quoted_doc" $'$HOME ${PATH} $(id -u) `id -u` \'single\' "double" \\n \\\\ 100%'

# Unquoted heredoc delimiter: $var and $(...) expand, \$ and \\ unescape,
# and quotes are kept as typed.
who=world
unquoted_doc=$(cat <<UNQUOTED_END
hello $who \$who $(echo 'it'"'"'s') \\ 'kept' "kept"
UNQUOTED_END
)
check "heredoc-unquoted" "$unquoted_doc" "hello world \$who it's \\ 'kept' \"kept\""

# Backslashes, single and doubled.
backslashes='C:\temp\new\\share\'
check "backslashes" "$backslashes" $'C:\\temp\\new\\\\share\\'
check "backslash-count" "$(printf '%s' "$backslashes" | tr -cd '\\' | wc -c | tr -d ' ')" "5"

# Literal dollars.
check "dollar-literals" '$HOME ${X:-y} $(date) $$ $1' "\$HOME \${X:-y} \$(date) \$\$ \$1"

# printf: %% and \n in the format, and a %s argument that must not be interpreted.
formatted=$(printf 'rate %d%%\nnext\\n %s' 50 '100% \n raw')
check "printf" "$formatted" $'rate 50%\nnext\\n 100% \\n raw'

# Non-ASCII bytes (base64 transport must not re-encode).
check "utf8" 'naïve café — ✓' $'na\xc3\xafve caf\xc3\xa9 \xe2\x80\x94 \xe2\x9c\x93'

# The [env] value from job.toml, through the header's export.
check "env-greeting" "${DEMO_GREETING-<unset>}" $'it\'s a "demo"'

if [ "$failures" -ne 0 ]; then
    echo "quoting: $failures of $checks checks FAILED: the script was altered on its way"
    exit 1
fi
echo "quoting: all $checks checks passed"
