# rag-ingestion (workload): run the weekly ingestion.
#
# VOYAGE_API_KEY, FINNHUB_API_KEY, EDGAR_IDENTITY and RAG_DATABASE_URL come from the
# job's [secrets] (SSM /alpha-engine/<name>): spotstep's runner reads them before this
# script starts and masks them in its output.
cd "$SPOTSTEP_WORKDIR/repo"

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
