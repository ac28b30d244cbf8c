# hush (workload): a short step whose end nobody is told of.
echo "hush: done in a moment"
sleep 1
