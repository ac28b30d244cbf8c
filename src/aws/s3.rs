//! The S3 calls: the job's config (exists? copy to staging), a step output's tail, and
//! deleting a run's staging prefix.

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_sdk_s3::Client;

use crate::error::{Error, Result};

/// Whether `s3://bucket/key` exists (HeadObject; 404 is `false`, anything else an error).
pub async fn exists(s3: &Client, bucket: &str, key: &str) -> Result<bool> {
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error().is_some_and(|s| s.is_not_found())
                || e.code() == Some("NotFound") =>
        {
            Ok(false)
        }
        Err(e) => Err(Error::from_sdk(
            &format!("HeadObject s3://{bucket}/{key}"),
            &e,
        )),
    }
}

/// Copies `s3://from_bucket/from_key` to `s3://bucket/key`.
pub async fn copy(
    s3: &Client,
    from_bucket: &str,
    from_key: &str,
    bucket: &str,
    key: &str,
) -> Result<()> {
    s3.copy_object()
        .copy_source(format!("{from_bucket}/{from_key}"))
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| Error::from_sdk(&format!("CopyObject to s3://{bucket}/{key}"), &e))?;
    Ok(())
}

/// The text of `s3://bucket/key`, or `None` when it does not exist.
pub async fn read(s3: &Client, bucket: &str, key: &str) -> Result<Option<String>> {
    Ok(get(s3, bucket, key).await?.map(|(text, _)| text))
}

/// The text and ETag of `s3://bucket/key`, or `None` when it does not exist.
async fn get(s3: &Client, bucket: &str, key: &str) -> Result<Option<(String, String)>> {
    match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => {
            let etag = out.e_tag().unwrap_or_default().to_string();
            let bytes = out
                .body
                .collect()
                .await
                .map_err(|e| Error::AwsError(format!("reading s3://{bucket}/{key}: {e}")))?;
            Ok(Some((
                String::from_utf8_lossy(&bytes.into_bytes()).into_owned(),
                etag,
            )))
        }
        Err(e)
            if e.as_service_error().is_some_and(|s| s.is_no_such_key())
                || e.code() == Some("NoSuchKey") =>
        {
            Ok(None)
        }
        Err(e) => Err(Error::from_sdk(
            &format!("GetObject s3://{bucket}/{key}"),
            &e,
        )),
    }
}

/// What a conditional write requires of the object already at its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition<'a> {
    /// No object (`If-None-Match: *`).
    Absent,
    /// The object with this ETag, unchanged since it was read (`If-Match`).
    Unchanged(&'a str),
}

/// Whether a conditional write happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Written,
    /// The condition did not hold (`412 PreconditionFailed`), or another conditional write
    /// to the key was in flight (`409 ConditionalRequestConflict`: read again and retry).
    Refused,
}

/// Writes `body` to `s3://bucket/key` only if `condition` holds; S3 decides atomically, so
/// of two writers racing for one key one wins.
pub async fn put_if(
    s3: &Client,
    bucket: &str,
    key: &str,
    body: String,
    condition: Condition<'_>,
) -> Result<Written> {
    let request = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/json")
        .body(body.into_bytes().into());
    let request = match condition {
        Condition::Absent => request.if_none_match("*"),
        Condition::Unchanged(etag) => request.if_match(etag),
    };
    match request.send().await {
        Ok(_) => Ok(Written::Written),
        Err(e)
            if matches!(
                e.code(),
                Some("PreconditionFailed" | "ConditionalRequestConflict")
            ) =>
        {
            Ok(Written::Refused)
        }
        Err(e) => Err(Error::from_sdk(
            &format!("PutObject (conditional) s3://{bucket}/{key}"),
            &e,
        )),
    }
}

/// The text and ETag of `s3://bucket/key`, or `None` when it does not exist. Listed first:
/// without `s3:ListBucket`, reading a missing key is `AccessDenied`, not `NoSuchKey`.
pub async fn read_listed(s3: &Client, bucket: &str, key: &str) -> Result<Option<(String, String)>> {
    if !list(s3, bucket, key).await?.iter().any(|o| o.key == key) {
        return Ok(None);
    }
    get(s3, bucket, key).await
}

/// Deletes `s3://bucket/key` (a missing key is fine).
pub async fn delete(s3: &Client, bucket: &str, key: &str) -> Result<()> {
    s3.delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| Error::from_sdk(&format!("DeleteObject s3://{bucket}/{key}"), &e))?;
    Ok(())
}

/// Writes `body` to `s3://bucket/key`.
pub async fn put(s3: &Client, bucket: &str, key: &str, body: String) -> Result<()> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/json")
        .body(body.into_bytes().into())
        .send()
        .await
        .map_err(|e| Error::from_sdk(&format!("PutObject s3://{bucket}/{key}"), &e))?;
    Ok(())
}

/// The last `bytes` bytes of `s3://bucket/key` as text, or why they could not be read (the
/// error code).
pub async fn tail(
    s3: &Client,
    bucket: &str,
    key: &str,
    bytes: u64,
) -> std::result::Result<String, String> {
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .range(format!("bytes=-{bytes}"))
        .send()
        .await;
    match object {
        Ok(out) => out
            .body
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.into_bytes()).into_owned())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.code().unwrap_or("unreadable").to_string()),
    }
}

/// Deletes every object under `prefix` in `bucket` (and nothing outside it); returns how
/// many were deleted.
pub async fn delete_prefix(s3: &Client, bucket: &str, prefix: &str) -> Result<usize> {
    let keys: Vec<String> = list(s3, bucket, prefix)
        .await?
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.starts_with(prefix))
        .collect();
    // DeleteObjects takes at most 1,000 keys.
    for batch in keys.chunks(1000) {
        let building = |e: aws_sdk_s3::error::BuildError| {
            Error::AwsError(format!("building the DeleteObjects request: {e}"))
        };
        let objects = batch
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(building)?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(building)?;
        s3.delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| {
                Error::from_sdk(&format!("DeleteObjects under s3://{bucket}/{prefix}"), &e)
            })?;
    }
    Ok(keys.len())
}

/// An object under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: i64,
    /// Epoch milliseconds.
    pub modified_millis: i64,
}

/// Every object under `prefix` in `bucket` (ListObjectsV2, all pages), in key order.
pub async fn list(s3: &Client, bucket: &str, prefix: &str) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| Error::from_sdk(&format!("ListObjectsV2 s3://{bucket}/{prefix}"), &e))?;
        out.extend(page.contents().iter().filter_map(|o| {
            Some(Listed {
                key: o.key()?.to_string(),
                size: o.size().unwrap_or_default(),
                modified_millis: o
                    .last_modified()
                    .and_then(|d| d.to_millis().ok())
                    .unwrap_or_default(),
            })
        }));
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
            _ => return Ok(out),
        }
    }
}
