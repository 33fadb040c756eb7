//! Email notifications over SMTP (lettre): STARTTLS, TLS from the first byte,
//! or plain for a relay on the same host; credentials by reference.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{SmtpTransport, Transport as _};

use super::{Attempt, Message, resolve};
use crate::policy::spec::{EmailSpec, SmtpSecurity};

pub(super) fn send(
    spec: &EmailSpec,
    message: &Message,
    log_tail: &[String],
) -> Result<(), Attempt> {
    let mut builder = lettre::Message::builder()
        .from(
            spec.from
                .parse()
                .map_err(|error| Attempt::permanent(format!("notify.email.from: {error}")))?,
        )
        .subject(message.subject())
        .header(ContentType::TEXT_PLAIN);
    for to in &spec.to {
        builder = builder.to(to
            .parse()
            .map_err(|error| Attempt::permanent(format!("notify.email.to `{to}`: {error}")))?);
    }
    let mail = builder
        .body(message.body(log_tail))
        .map_err(|error| Attempt::permanent(format!("cannot build the email: {error}")))?;

    let smtp = &spec.smtp;
    let transport = match smtp.security {
        SmtpSecurity::Starttls => SmtpTransport::starttls_relay(&smtp.host),
        SmtpSecurity::Tls => SmtpTransport::relay(&smtp.host),
        SmtpSecurity::None => Ok(SmtpTransport::builder_dangerous(&smtp.host)),
    }
    .map_err(|error| Attempt::permanent(format!("SMTP {}: {error}", smtp.host)))?;
    let port = smtp.port.unwrap_or(match smtp.security {
        SmtpSecurity::Starttls => 587,
        SmtpSecurity::Tls => 465,
        SmtpSecurity::None => 25,
    });
    let mut transport = transport.port(port).timeout(Some(Duration::from_secs(10)));
    if let Some(username) = &smtp.username {
        let username = resolve(username, "email.smtp.username")?;
        let password = match &smtp.password {
            Some(password) => resolve(password, "email.smtp.password")?,
            None => crate::policy::secret::Secret::new(String::new()),
        };
        transport = transport.credentials(Credentials::new(
            username.expose().to_owned(),
            password.expose().to_owned(),
        ));
    }
    let transport = transport.build();
    match transport.send(&mail) {
        Ok(_) => Ok(()),
        // A permanent (5xx) answer will not change by asking again.
        Err(error) if error.is_permanent() => Err(Attempt::permanent(format!(
            "SMTP {}:{port} refused the message: {error}",
            smtp.host
        ))),
        Err(error) => Err(Attempt::transient(format!(
            "SMTP {}:{port}: {error}",
            smtp.host
        ))),
    }
}
