# rag-ingestion (workload): fetch the RAG secrets, run the weekly ingestion.
#
# Secrets, read from SSM Parameter Store with the instance role and exported
# under the same names (the names the old launcher used):
#   /alpha-engine/VOYAGE_API_KEY
#   /alpha-engine/FINNHUB_API_KEY
#   /alpha-engine/EDGAR_IDENTITY
#   /alpha-engine/RAG_DATABASE_URL
# Values are never printed. Only parameter names appear in output.
cd "$SPOTSTEP_WORKDIR/repo"

for name in VOYAGE_API_KEY FINNHUB_API_KEY EDGAR_IDENTITY RAG_DATABASE_URL; do
    param="/alpha-engine/$name"
    if ! value=$(aws ssm get-parameter --with-decryption --name "$param" --query 'Parameter.Value' --output text); then
        echo "ERROR: could not read SSM parameter $param"
        exit 1
    fi
    if [ -z "$value" ] || [ "$value" = "None" ]; then
        echo "ERROR: SSM parameter $param is empty"
        exit 1
    fi
    export "$name=$value"
done
unset value
echo "rag-ingestion: secrets loaded: VOYAGE_API_KEY FINNHUB_API_KEY EDGAR_IDENTITY RAG_DATABASE_URL"

ingest=rag/pipelines/run_weekly_ingestion.sh
# The script silently ignores flags it does not know. If it has no preflight
# support, a preflight run would do a real ingestion, so refuse instead.
if [ "$SPOTSTEP_PREFLIGHT" = "1" ] && ! grep -q -e "$SPOTSTEP_PREFLIGHT_FLAG" "$ingest"; then
    echo "ERROR: $ingest does not handle $SPOTSTEP_PREFLIGHT_FLAG; refusing a real ingestion in a preflight run"
    exit 1
fi

echo "rag-ingestion: $ingest starting at $(date -u)"
bash "$ingest" ${SPOTSTEP_PREFLIGHT_FLAG:+"$SPOTSTEP_PREFLIGHT_FLAG"}
echo "rag-ingestion: complete at $(date -u)"
