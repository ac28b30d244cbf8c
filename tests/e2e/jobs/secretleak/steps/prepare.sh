# prepare (setup): prints its secret, then succeeds.
echo "prepare: the token is $LEAK_TOKEN"
