//! What `validate` checks in a `mysql` source beyond its shape: `url`
//! against the separate fields, a named database, passwords in plain text,
//! `mysqldump-options` that would break the artifact or carry connection
//! settings, absolute paths. Reads no secret and connects nothing.

use crate::database::SpecProblem;
use crate::policy::secret::{Template, url_has_literal_password};
use crate::policy::spec::MysqlSpec;

/// `mariadb-dump` options that would change the artifact's shape or
/// destination, or bring connection settings of their own.
const REFUSED: [&str; 30] = [
    "-r",
    "--result-file",
    "-T",
    "--tab",
    "-X",
    "--xml",
    "-B",
    "--databases",
    "-A",
    "--all-databases",
    "--compact",
    "--skip-comments",
    "--skip-opt",
    "--skip-add-drop-table",
    "--no-create-info",
    "-t",
    "-p",
    "--password",
    "-h",
    "--host",
    "-P",
    "--port",
    "-u",
    "--user",
    "-S",
    "--socket",
    "--defaults-file",
    "--defaults-extra-file",
    "--no-defaults",
    "--print-defaults",
];

fn problem(
    error: bool,
    code: &'static str,
    field: &str,
    message: String,
    hint: &str,
) -> SpecProblem {
    SpecProblem {
        error,
        code,
        field: field.to_owned(),
        at_key: false,
        message,
        hint: hint.to_owned(),
    }
}

/// The problems of `spec`.
pub fn check(spec: &MysqlSpec) -> Vec<SpecProblem> {
    let mut problems = Vec::new();
    if spec.url.is_some() {
        for (name, given) in [
            ("host", spec.host.is_some()),
            ("port", spec.port.is_some()),
            ("socket", spec.socket.is_some()),
            ("user", spec.user.is_some()),
            ("database", spec.database.is_some()),
        ] {
            if given {
                problems.push(problem(
                    true,
                    "conflicting-fields",
                    name,
                    format!("`url` and `{name}` cannot be combined"),
                    "put the whole connection in `url`, or drop `url` and use the separate fields",
                ));
            }
        }
    } else if spec.database.is_none() {
        problems.push(SpecProblem {
            at_key: true,
            ..problem(
                true,
                "missing-field",
                "",
                "missing field `database`".to_owned(),
                "add `database: <name>`, or give the whole connection as `url`",
            )
        });
    }
    if let Some(url) = &spec.url {
        if let Ok(template) = Template::parse(url)
            && let Some(literal) = template.literal()
            && !(literal.starts_with("mysql://") || literal.starts_with("mariadb://"))
        {
            problems.push(problem(
                true,
                "invalid-value",
                "url",
                "`url` is not a mysql:// URL".to_owned(),
                "write `mysql://user@host:3306/database`, or a reference like `${env:MYSQL_URL}`",
            ));
        }
        if url_has_literal_password(url) {
            problems.push(problem(
                false,
                "literal-secret",
                "url",
                "the URL holds a password in plain text".to_owned(),
                "move it out of the policy: `${env:MYSQL_URL}` for the whole URL, or the `password` field with a reference",
            ));
        }
    }
    if let Some(password) = &spec.password
        && Template::parse(password).is_ok_and(|template| !template.has_references())
    {
        problems.push(problem(
            false,
            "literal-secret",
            "password",
            "secret written in plain text".to_owned(),
            "policies live in git; use a reference such as `${env:MYSQL_PASSWORD}` or `${file:/run/secrets/name}`",
        ));
    }
    for (index, option) in spec.mysqldump_options.iter().enumerate() {
        let name = option.split('=').next().unwrap_or(option);
        // `-pSECRET`, `-hdb1`: a refused short option with its value attached.
        let short_with_value = REFUSED.iter().any(|refused| {
            refused.len() == 2 && name.starts_with(refused) && !name.starts_with("--")
        });
        if REFUSED.contains(&name) || short_with_value {
            problems.push(problem(
                true,
                "refused-option",
                &format!("mysqldump-options/{index}"),
                format!("`{option}` cannot be passed to mariadb-dump"),
                "backup dumps one database with its header and trailer, to its own output, and connects with the policy's fields; use those instead",
            ));
        }
    }
    for (name, path, example) in [
        (
            "socket",
            &spec.socket,
            "for example `/run/mysqld/mysqld.sock`",
        ),
        ("bin-dir", &spec.bin_dir, "for example `/usr/bin`"),
    ] {
        if let Some(path) = path
            && !path.is_absolute()
        {
            problems.push(problem(
                true,
                "invalid-value",
                name,
                format!("`{name}` must be an absolute path"),
                example,
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_options_that_break_the_dump() {
        let spec = MysqlSpec {
            database: Some("app".to_owned()),
            mysqldump_options: vec![
                "--ignore-table=app.sessions".to_owned(),
                "--result-file=/tmp/x".to_owned(),
                "-psecret".to_owned(),
                "--compact".to_owned(),
                "--quick".to_owned(),
            ],
            ..MysqlSpec::default()
        };
        let fields: Vec<String> = check(&spec)
            .into_iter()
            .map(|problem| problem.field)
            .collect();
        assert_eq!(
            fields,
            [
                "mysqldump-options/1",
                "mysqldump-options/2",
                "mysqldump-options/3"
            ]
        );
    }

    #[test]
    fn wants_a_database_and_one_way_to_connect() {
        let problems = check(&MysqlSpec::default());
        assert_eq!(problems.len(), 1);
        assert!(problems[0].at_key && problems[0].code == "missing-field");
        let both = MysqlSpec {
            url: Some("postgresql://db/app".to_owned()),
            database: Some("app".to_owned()),
            ..MysqlSpec::default()
        };
        let codes: Vec<&str> = check(&both).iter().map(|problem| problem.code).collect();
        assert_eq!(codes, ["conflicting-fields", "invalid-value"]);
    }
}
