# rag-smoke (workload): RAG import checks + an ingestion dry run.
# The dry run still begins with rag.preflight, which requires the four RAG
# secrets: they come from the job's [secrets], as in rag-ingestion.
cd "$SPOTSTEP_WORKDIR/repo"

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
