//! The Garage harness hands out a working S3 endpoint: an independent client
//! (curl, signing with AWS SigV4) puts, gets, lists and deletes objects with
//! its credentials, in path-style addressing, and a wrong secret is refused.

mod common;

use common::garage::Garage;
use sha2::{Digest as _, Sha256};
use std::process::Command;

/// What the server answered.
struct Response {
    status: u16,
    body: Vec<u8>,
}

impl Response {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `METHOD endpoint/TARGET` with `body`, signed by curl for `secret`.
fn s3(garage: &Garage, secret: &str, method: &str, target: &str, body: &[u8]) -> Response {
    let folder = tempfile::tempdir().unwrap();
    let response = folder.path().join("response");
    let sha256: String = Sha256::digest(body)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let mut command = Command::new("curl");
    command
        .args(["--silent", "--show-error", "--request", method])
        .args(["--aws-sigv4", &format!("aws:amz:{}:s3", garage.region())])
        .args(["--user", &format!("{}:{secret}", garage.access_key_id())])
        // S3 requires the payload's hash; curl signs it as given.
        .args(["--header", &format!("x-amz-content-sha256: {sha256}")])
        .args(["--write-out", "%{http_code}", "--output"])
        .arg(&response);
    if !body.is_empty() {
        let upload = folder.path().join("upload");
        std::fs::write(&upload, body).unwrap();
        command
            .args(["--header", "Content-Type: application/octet-stream"])
            .arg("--data-binary")
            .arg(format!("@{}", upload.display()));
    }
    command.arg(format!("{}/{target}", garage.endpoint()));
    let output = command.output().expect("curl runs");
    assert!(
        output.status.success(),
        "curl {method} {target}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Response {
        status: String::from_utf8_lossy(&output.stdout).parse().unwrap(),
        body: std::fs::read(&response).unwrap_or_default(),
    }
}

/// Bytes that are not text and span more than one Garage block (1 MiB).
fn payload() -> Vec<u8> {
    let mut state: u32 = 0x2545_f491;
    (0..1_500_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

#[test]
fn an_independent_client_puts_gets_lists_and_deletes_objects() {
    let garage = Garage::start();
    let secret = garage.secret_access_key();
    let object = format!("{}/smoke/object.bin", garage.bucket());
    let listing = format!("{}?list-type=2", garage.bucket());
    let body = payload();

    let put = s3(&garage, secret, "PUT", &object, &body);
    assert_eq!(put.status, 200, "PUT: {}", put.text());

    let get = s3(&garage, secret, "GET", &object, b"");
    assert_eq!(get.status, 200, "GET: {}", get.text());
    assert!(get.body == body, "GET returned other bytes than were put");

    let list = s3(&garage, secret, "GET", &listing, b"");
    assert_eq!(list.status, 200, "LIST: {}", list.text());
    assert!(
        list.text().contains("<Key>smoke/object.bin</Key>"),
        "the listing lacks the object: {}",
        list.text()
    );

    let delete = s3(&garage, secret, "DELETE", &object, b"");
    assert_eq!(delete.status, 204, "DELETE: {}", delete.text());
    assert_eq!(s3(&garage, secret, "GET", &object, b"").status, 404);
    let list = s3(&garage, secret, "GET", &listing, b"");
    assert!(
        !list.text().contains("<Key>"),
        "the object is still listed after DELETE: {}",
        list.text()
    );
}

#[test]
fn a_wrong_secret_is_refused() {
    let garage = Garage::start();
    let wrong = "0".repeat(garage.secret_access_key().len());
    let object = format!("{}/refused.bin", garage.bucket());
    let put = s3(&garage, &wrong, "PUT", &object, b"not stored");
    assert_eq!(put.status, 403, "PUT with a wrong secret: {}", put.text());
    let list = s3(
        &garage,
        garage.secret_access_key(),
        "GET",
        &format!("{}?list-type=2", garage.bucket()),
        b"",
    );
    assert_eq!(list.status, 200, "LIST: {}", list.text());
    assert!(!list.text().contains("refused.bin"), "{}", list.text());
}

#[test]
fn more_buckets_are_separate_and_the_cli_sees_them() {
    let garage = Garage::start();
    garage.create_bucket("second");
    let secret = garage.secret_access_key();
    let put = s3(&garage, secret, "PUT", "second/only-here.txt", b"second");
    assert_eq!(put.status, 200, "PUT: {}", put.text());

    let first = s3(
        &garage,
        secret,
        "GET",
        &format!("{}?list-type=2", garage.bucket()),
        b"",
    );
    assert_eq!(first.status, 200, "LIST: {}", first.text());
    assert!(!first.text().contains("only-here.txt"), "{}", first.text());
    let second = s3(&garage, secret, "GET", "second?list-type=2", b"");
    assert!(
        second.text().contains("<Key>only-here.txt</Key>"),
        "{}",
        second.text()
    );

    let buckets = garage.garage(&["bucket", "list"]);
    assert!(
        buckets.contains("second") && buckets.contains(garage.bucket()),
        "`garage bucket list`:\n{buckets}"
    );
}
