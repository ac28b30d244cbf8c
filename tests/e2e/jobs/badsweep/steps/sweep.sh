echo "shard $SPOTSTEP_SHARD"
