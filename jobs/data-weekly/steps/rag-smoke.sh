# rag-smoke (workload): RAG import checks + an ingestion dry run.
# The dry run still begins with rag.preflight, which requires the four
# secrets, so they are fetched exactly as in rag-ingestion (names listed
# there). Values are never printed.
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
echo "rag-smoke: secrets loaded"

echo "rag-smoke: importing the RAG pipeline modules"
"$PYTHON_BIN" -c '
import rag.pipelines.ingest_sec_filings
import rag.pipelines.ingest_8k_filings
import rag.pipelines.ingest_earnings_finnhub
import rag.pipelines.ingest_theses
import rag.pipelines.filing_change_detection
print("rag imports OK")
'

echo "rag-smoke: run_weekly_ingestion.sh --dry-run"
bash rag/pipelines/run_weekly_ingestion.sh --dry-run
echo "rag-smoke: passed"
