//! How a backup's bytes are stored: compressed (gzip or zstd, on every
//! core, or not at all), then encrypted to age recipients, in one streamed
//! pass each way. Every stored file decodes with stock tools alone:
//! `age -d -i key.txt | zstd -d` (or `gunzip`).
//!
//! Writing: [`Compression::compressor`] and [`Recipients::encryptor`].
//! Reading: [`decompressor`] and [`Identities::decryptor`]. This module knows
//! nothing of backups, destinations or sidecars; it must not buffer a whole
//! stream (memory stays flat whatever the size).

use std::io::{self, BufReader, Read, Write};

use sha2::{Digest as _, Sha256};

/// Why a stream could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown compression `{0}` (known: gzip, zstd, none)")]
    UnknownCompression(String),
    #[error("cannot start the compressor: {0}")]
    Compressor(String),
    #[error("`{recipient}` is not an age recipient: {reason}")]
    Recipient { recipient: String, reason: String },
    #[error("no age identity in {what}: {reason}")]
    Identity { what: String, reason: String },
    #[error("cannot start encrypting: {0}")]
    Encrypt(String),
    #[error("cannot decrypt: {0}")]
    Decrypt(String),
    #[error(
        "it is encrypted and no identity was given: set `encryption.age.identity` in the policy or pass `--identity FILE`"
    )]
    NoIdentity,
}

/// How data is compressed before it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip on every core, pigz-style, as one standard gzip stream.
    Gzip { level: u32 },
    /// zstd on every core, one standard frame with a content checksum.
    Zstd { level: i32 },
    /// Stored as dumped.
    None,
}

impl Compression {
    /// The name sidecars record: `gzip`, `zstd`, `none`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip { .. } => "gzip",
            Compression::Zstd { .. } => "zstd",
            Compression::None => "none",
        }
    }

    /// What file names get for it: `.gz`, `.zst`, nothing.
    pub fn extension(self) -> &'static str {
        extension(self.name())
    }

    /// What a policy's `compression` asks for.
    pub fn from_spec(spec: &crate::policy::spec::CompressionSpec) -> Compression {
        use crate::policy::spec::CompressionSpec;
        match spec {
            CompressionSpec::Gzip(gzip) => Compression::Gzip { level: gzip.level },
            CompressionSpec::Zstd(zstd) => Compression::Zstd { level: zstd.level },
            CompressionSpec::None(_) => Compression::None,
        }
    }

    /// For people: `gzip level 6`, `zstd level 3`, `none`.
    pub fn describe(self) -> String {
        match self {
            Compression::Gzip { level } => format!("gzip level {level}"),
            Compression::Zstd { level } => format!("zstd level {level}"),
            Compression::None => "none".to_owned(),
        }
    }

    /// A compressor on every core that writes into `output`.
    pub fn compressor<W: Write + Send + 'static>(
        self,
        output: W,
    ) -> Result<Box<dyn Compressor<W>>, Error> {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        match self {
            Compression::Gzip { level } => {
                use gzp::deflate::Gzip;
                use gzp::par::compress::{ParCompress, ParCompressBuilder};
                let compressor: ParCompress<Gzip, W> = ParCompressBuilder::new()
                    .num_threads(threads)
                    .map_err(|error| Error::Compressor(error.to_string()))?
                    .compression_level(gzp::Compression::new(level))
                    .from_writer(output);
                Ok(Box::new(compressor))
            }
            Compression::Zstd { level } => {
                let mut encoder = zstd::stream::write::Encoder::new(output, level)
                    .map_err(|error| Error::Compressor(error.to_string()))?;
                let threads = u32::try_from(threads).unwrap_or(1);
                // Jobs of 2 MiB (zstd's default at level 3 is 8 MiB): a
                // third of the memory on two workers for 0.5% in size
                // (measured with `zstd -3 -T2 -B`), so peak RSS stays flat
                // and small whatever the database size.
                encoder
                    .multithread(threads)
                    .and_then(|()| encoder.include_checksum(true))
                    .and_then(|()| {
                        encoder.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))
                    })
                    .map_err(|error| Error::Compressor(error.to_string()))?;
                Ok(Box::new(ZstdCompressor(Some(encoder))))
            }
            Compression::None => Ok(Box::new(Plain(output))),
        }
    }
}

/// Bytes of input per zstd job (each worker compresses one at a time).
const ZSTD_JOB_SIZE: u32 = 2 << 20;

/// The file name extension of compression `name` (`.gz`, `.zst`, nothing).
pub fn extension(name: &str) -> &'static str {
    match name {
        "gzip" => ".gz",
        "zstd" => ".zst",
        _ => "",
    }
}

/// A compressor's input. [`Compressor::finish`] writes the end of the
/// stream and gives the output back; after a failed write it must not be
/// called (the compressor has shut down).
pub trait Compressor<W>: Write + Send {
    fn finish(self: Box<Self>) -> io::Result<W>;
}

impl<W: Write + Send + 'static> Compressor<W>
    for gzp::par::compress::ParCompress<'static, gzp::deflate::Gzip, W>
{
    fn finish(mut self: Box<Self>) -> io::Result<W> {
        gzp::ZWriter::finish(&mut *self).map_err(|error| io::Error::other(error.to_string()))
    }
}

struct ZstdCompressor<W: Write>(Option<zstd::stream::write::Encoder<'static, W>>);

impl<W: Write> Write for ZstdCompressor<W> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        self.0
            .as_mut()
            .ok_or_else(|| io::Error::other("the compressor has finished"))?
            .write(buffer)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl<W: Write + Send> Compressor<W> for ZstdCompressor<W> {
    fn finish(mut self: Box<Self>) -> io::Result<W> {
        match self.0.take() {
            Some(encoder) => encoder.finish(),
            None => Err(io::Error::other("the compressor has finished")),
        }
    }
}

struct Plain<W>(W);

impl<W: Write> Write for Plain<W> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        self.0.write(buffer)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write + Send> Compressor<W> for Plain<W> {
    fn finish(mut self: Box<Self>) -> io::Result<W> {
        self.0.flush()?;
        Ok(self.0)
    }
}

/// Where compressed bytes go before they are stored: as they are, or
/// through an age stream.
pub enum Sealed<W: Write> {
    Plain(W),
    Age(Box<age::stream::StreamWriter<W>>),
}

impl<W: Write> Sealed<W> {
    /// `output` itself, or an age stream into it when `recipients` are given.
    pub fn new(recipients: Option<&Recipients>, output: W) -> Result<Sealed<W>, Error> {
        Ok(match recipients {
            None => Sealed::Plain(output),
            Some(recipients) => Sealed::Age(Box::new(recipients.encryptor(output)?)),
        })
    }

    /// Writes the end of the age stream (its last chunk) and flushes.
    pub fn finish(self) -> io::Result<W> {
        let mut output = match self {
            Sealed::Plain(output) => output,
            Sealed::Age(writer) => writer.finish()?,
        };
        output.flush()?;
        Ok(output)
    }
}

impl<W: Write> Write for Sealed<W> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        match self {
            Sealed::Plain(output) => output.write(buffer),
            Sealed::Age(writer) => writer.write(buffer),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sealed::Plain(output) => output.flush(),
            // Flushes what whole chunks were written; the last, partial one
            // is written at `finish`.
            Sealed::Age(writer) => writer.flush(),
        }
    }
}

/// The identities this process may decrypt with, by policy: registered by
/// the command that needs them (from `--identity FILE` or the policy's
/// `encryption.age.identity`) and read by whatever decodes a backup of that
/// policy (verify, restore, drills). Kept as the key text, parsed when used;
/// never printed.
pub mod keys {
    use std::collections::BTreeMap;
    use std::sync::{Mutex, PoisonError};

    use age::secrecy::{ExposeSecret as _, SecretString};

    use super::{Error, Identities};

    static KEYS: Mutex<BTreeMap<String, (String, SecretString)>> = Mutex::new(BTreeMap::new());

    /// Registers `text` (an identity file's contents, from `what`) for
    /// `policy`'s backups, after checking that it holds a key.
    pub fn provide(policy: &str, what: &str, text: SecretString) -> Result<(), Error> {
        Identities::parse(text.expose_secret(), what)?;
        KEYS.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(policy.to_owned(), (what.to_owned(), text));
        Ok(())
    }

    /// Registers the identity for `policy`'s backups: the file `given` on
    /// the command line, else the policy's `encryption.age.identity`
    /// reference, resolved. Whether there was one.
    pub fn load(
        policy: &crate::policy::Policy,
        given: Option<&std::path::Path>,
    ) -> Result<bool, Error> {
        if let Some(path) = given {
            let what = path.display().to_string();
            // As every file named on the command line or in a policy: a
            // regular file (a FIFO would wait for ever), read capped.
            let text =
                crate::bounded::read_file(path, crate::bounded::RECORD_LIMIT).map_err(|error| {
                    Error::Identity {
                        what: what.clone(),
                        reason: error.to_string(),
                    }
                })?;
            let text = String::from_utf8(text).map_err(|_| Error::Identity {
                what: what.clone(),
                reason: "it is not text".to_owned(),
            })?;
            provide(&policy.name, &what, SecretString::from(text))?;
            return Ok(true);
        }
        let Some(crate::policy::spec::EncryptionSpec::Age(age)) = &policy.encryption else {
            return Ok(false);
        };
        let Some(reference) = &age.identity else {
            return Ok(false);
        };
        let what = format!("the identity of policy `{}`", policy.name);
        let secret = crate::policy::secret::Template::parse(reference)
            .and_then(|template| template.resolve())
            .map_err(|error| Error::Identity {
                what: what.clone(),
                reason: error.to_string(),
            })?;
        provide(
            &policy.name,
            &what,
            SecretString::from(secret.expose().to_owned()),
        )?;
        Ok(true)
    }

    /// Whether an identity is registered for `policy`.
    pub fn has(policy: &str) -> bool {
        KEYS.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(policy)
    }

    /// The identities registered for `policy`, if any.
    pub fn for_policy(policy: &str) -> Option<Result<Identities, Error>> {
        let keys = KEYS.lock().unwrap_or_else(PoisonError::into_inner);
        let (what, text) = keys.get(policy)?;
        Some(Identities::parse(text.expose_secret(), what))
    }
}

/// A reader of the bytes a stored stream holds: decrypted with `identities`
/// when `encrypted`, then decompressed with `compression` (a sidecar's name).
/// Damage is found where it is (a read error), so a caller reads to the end
/// before it trusts any of it.
pub fn decoder<'a>(
    reader: impl Read + 'a,
    compression: &str,
    encrypted: bool,
    identities: Option<&Identities>,
) -> Result<Box<dyn Read + 'a>, Error> {
    if !is_known(compression) {
        return Err(Error::UnknownCompression(compression.to_owned()));
    }
    if !encrypted {
        return decompressor(compression, reader);
    }
    let identities = identities.ok_or(Error::NoIdentity)?;
    decompressor(compression, Decrypting(identities.decryptor(reader)?))
}

/// A read of a decoded stream that failed inside the age stream (damage,
/// a cut), as opposed to in the compressed one: the payload of the
/// `io::Error` the read returns, so callers can tell the two apart
/// whatever the decompressor above it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecryptFailure(String);

impl DecryptFailure {
    /// Whether `error` is one.
    pub fn is(error: &io::Error) -> bool {
        error
            .get_ref()
            .is_some_and(|inner| inner.is::<DecryptFailure>())
    }
}

/// The age stream's reader, its errors marked as [`DecryptFailure`]s.
struct Decrypting<R>(R);

impl<R: Read> Read for Decrypting<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        self.0.read(buffer).map_err(|error| {
            if error.kind() == io::ErrorKind::Interrupted || DecryptFailure::is(&error) {
                error
            } else {
                io::Error::new(error.kind(), DecryptFailure(error.to_string()))
            }
        })
    }
}

/// A reader of what `reader` holds compressed with `name` (a sidecar's
/// `compression`), decompressed as it is read.
pub fn decompressor<'a>(name: &str, reader: impl Read + 'a) -> Result<Box<dyn Read + 'a>, Error> {
    match name {
        "gzip" => Ok(Box::new(flate2::read::GzDecoder::new(reader))),
        "zstd" => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(BufReader::new(reader))
                .map_err(|error| Error::Compressor(error.to_string()))?;
            // One frame is one backup: bytes after it are not part of it.
            decoder = decoder.single_frame();
            Ok(Box::new(decoder))
        }
        "none" => Ok(Box::new(reader)),
        other => Err(Error::UnknownCompression(other.to_owned())),
    }
}

/// Whether `name` is a compression this version reads.
pub fn is_known(name: &str) -> bool {
    matches!(name, "gzip" | "zstd" | "none")
}

/// The public keys a backup is encrypted to.
pub struct Recipients {
    recipients: Vec<Box<dyn age::Recipient + Send>>,
    fingerprints: Vec<String>,
}

impl std::fmt::Debug for Recipients {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_list().entries(&self.fingerprints).finish()
    }
}

impl Recipients {
    /// Reads age recipients: `age1…` X25519 keys, or SSH public keys
    /// (`ssh-ed25519 …`, `ssh-rsa …`).
    pub fn parse(texts: &[String]) -> Result<Recipients, Error> {
        let mut recipients: Vec<Box<dyn age::Recipient + Send>> = Vec::new();
        let mut fingerprints = Vec::new();
        for text in texts {
            let text = text.trim();
            recipients.push(parse_recipient(text)?);
            fingerprints.push(fingerprint(text));
        }
        if recipients.is_empty() {
            return Err(Error::Recipient {
                recipient: String::new(),
                reason: "no recipient given".to_owned(),
            });
        }
        Ok(Recipients {
            recipients,
            fingerprints,
        })
    }

    /// Fingerprints of the recipients, for sidecars (see [`fingerprint`]).
    pub fn fingerprints(&self) -> &[String] {
        &self.fingerprints
    }

    /// An age stream to every recipient, written into `output`.
    /// [`age::stream::StreamWriter::finish`] writes its last chunk.
    pub fn encryptor<W: Write>(&self, output: W) -> Result<age::stream::StreamWriter<W>, Error> {
        let encryptor = age::Encryptor::with_recipients(
            self.recipients
                .iter()
                .map(|recipient| recipient.as_ref() as &dyn age::Recipient),
        )
        .map_err(|error| Error::Encrypt(error.to_string()))?;
        encryptor
            .wrap_output(output)
            .map_err(|error| Error::Encrypt(error.to_string()))
    }
}

fn parse_recipient(text: &str) -> Result<Box<dyn age::Recipient + Send>, Error> {
    let invalid = |reason: String| Error::Recipient {
        recipient: text.to_owned(),
        reason,
    };
    if text.starts_with("age1") {
        return text
            .parse::<age::x25519::Recipient>()
            .map(|recipient| Box::new(recipient) as Box<dyn age::Recipient + Send>)
            .map_err(|error| invalid(error.to_string()));
    }
    if text.starts_with("ssh-") {
        return text
            .parse::<age::ssh::Recipient>()
            .map(|recipient| Box::new(recipient) as Box<dyn age::Recipient + Send>)
            .map_err(|error| invalid(format!("{error:?}")));
    }
    Err(invalid(
        "expected an `age1…` public key (age-keygen) or an SSH public key (`ssh-ed25519 …`)"
            .to_owned(),
    ))
}

/// What a sidecar records of a recipient: `sha256:` and the first 16 hex
/// digits of the SHA-256 of its text (so it can be matched, never used).
pub fn fingerprint(recipient: &str) -> String {
    let digest = Sha256::digest(recipient.trim().as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256:{}", &hex[..16])
}

/// The private keys a backup is decrypted with.
pub struct Identities {
    identities: Vec<Box<dyn age::Identity>>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "Identities({} keys)", self.identities.len())
    }
}

impl Identities {
    /// Reads an age identity file (`AGE-SECRET-KEY-1…` lines, `#` comments),
    /// or an unencrypted SSH private key, from `text`; `what` names where it
    /// came from for errors (never the text itself).
    pub fn parse(text: &str, what: &str) -> Result<Identities, Error> {
        let invalid = |reason: String| Error::Identity {
            what: what.to_owned(),
            reason,
        };
        if text.contains("-----BEGIN OPENSSH PRIVATE KEY-----") {
            let identity = age::ssh::Identity::from_buffer(io::Cursor::new(text), None)
                .map_err(|error| invalid(error.to_string()))?;
            return Ok(Identities {
                identities: vec![Box::new(identity)],
            });
        }
        let file = age::IdentityFile::from_buffer(io::Cursor::new(text))
            .map_err(|error| invalid(error.to_string()))?;
        let identities = file
            .into_identities()
            .map_err(|error| invalid(error.to_string()))?;
        if identities.is_empty() {
            return Err(invalid("the file holds no key".to_owned()));
        }
        Ok(Identities { identities })
    }

    /// A reader of the plaintext of the age stream `reader`. Damage is
    /// found at the chunk it is in (an error from `read`), so a caller must
    /// read to the end before trusting any of it.
    pub fn decryptor<R: Read>(&self, reader: R) -> Result<age::stream::StreamReader<R>, Error> {
        let decryptor =
            age::Decryptor::new(reader).map_err(|error| Error::Decrypt(error.to_string()))?;
        decryptor
            .decrypt(
                self.identities
                    .iter()
                    .map(|identity| identity.as_ref() as &dyn age::Identity),
            )
            .map_err(|error| match error {
                age::DecryptError::NoMatchingKeys => Error::Decrypt(
                    "none of the given keys opens it (encrypted to other recipients?)".to_owned(),
                ),
                error => Error::Decrypt(error.to_string()),
            })
    }
}

/// The file name suffix of a stored stream: compression, then `.age` when
/// encrypted (`.zst.age`).
pub fn suffix(compression: &str, encrypted: bool) -> String {
    format!(
        "{}{}",
        extension(compression),
        if encrypted { ".age" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret as _;

    fn round_trip(compression: Compression, data: &[u8]) -> Vec<u8> {
        let stored = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buffer);
                Ok(buffer.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut compressor = compression
            .compressor(Shared(std::sync::Arc::clone(&stored)))
            .unwrap();
        compressor.write_all(data).unwrap();
        compressor.finish().unwrap().flush().unwrap();
        let stored = stored.lock().unwrap().clone();
        let mut decoded = Vec::new();
        decompressor(compression.name(), stored.as_slice())
            .unwrap()
            .read_to_end(&mut decoded)
            .unwrap();
        decoded
    }

    #[test]
    fn every_compression_round_trips() {
        let data: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for compression in [
            Compression::Gzip { level: 6 },
            Compression::Zstd { level: 3 },
            Compression::None,
        ] {
            assert_eq!(round_trip(compression, &data), data, "{compression:?}");
        }
        assert!(decompressor("lz4", &b""[..]).is_err());
    }

    #[test]
    fn age_round_trips_and_refuses_other_keys_and_damage() {
        let key = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let recipients = Recipients::parse(&[key.to_public().to_string()]).unwrap();
        assert_eq!(recipients.fingerprints().len(), 1);
        assert!(recipients.fingerprints()[0].starts_with("sha256:"));
        let data = vec![7_u8; 200_000];
        let mut stored = Vec::new();
        let mut writer = recipients.encryptor(&mut stored).unwrap();
        writer.write_all(&data).unwrap();
        writer.finish().unwrap();

        let identity_text = key.to_string().expose_secret().to_owned();
        let identities = Identities::parse(&identity_text, "the test key").unwrap();
        let mut plain = Vec::new();
        identities
            .decryptor(stored.as_slice())
            .unwrap()
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, data);

        let wrong = Identities::parse(other.to_string().expose_secret(), "other").unwrap();
        let refused = wrong.decryptor(stored.as_slice()).err().unwrap();
        assert!(
            refused.to_string().contains("none of the given keys"),
            "{refused}"
        );

        // One flipped bit in the middle: found when that chunk is read.
        let mut damaged = stored.clone();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 1;
        let mut sink = Vec::new();
        assert!(
            identities
                .decryptor(damaged.as_slice())
                .unwrap()
                .read_to_end(&mut sink)
                .is_err()
        );
        // Cut short: the last chunk is missing.
        let truncated = &stored[..stored.len() - 100];
        assert!(
            identities
                .decryptor(truncated)
                .unwrap()
                .read_to_end(&mut Vec::new())
                .is_err()
        );
    }

    #[test]
    fn recipients_must_be_age_or_ssh_public_keys() {
        for bad in ["age1notakey", "AGE-SECRET-KEY-1QQQ", "hello", ""] {
            assert!(Recipients::parse(&[bad.to_owned()]).is_err(), "{bad}");
        }
        assert!(Recipients::parse(&[]).is_err());
        let ssh = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN alice@rust";
        assert!(Recipients::parse(&[ssh.to_owned()]).is_ok());
        assert_eq!(suffix("zstd", true), ".zst.age");
        assert_eq!(suffix("gzip", false), ".gz");
        assert_eq!(suffix("none", false), "");
    }
}
