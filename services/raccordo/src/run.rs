//! Runs one parsed command and prints its result.

use std::io::{BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use raccordo_core::amqp::dead_letter::printable;
use raccordo_core::settings::Settings;

use crate::cli::{
    AsylumCommand, Command, ConsoleCommand, ConsoleUserCommand, DlqCommand, EvictionCommand,
    IdsCommand, PublishersCommand, RegistryCommand, ReportCommand, RetentionCommand,
    RotationCommand,
};
use crate::import::Table;
use crate::table::Format;
use raccordo_core::ownership::IdKind;

/// Runs `command`; the exit code says whether it did what was asked.
pub async fn run(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Setup { definitions } => setup(&settings, definitions).await?,
        command @ (Command::Backup(_) | Command::Restore(_)) => backups(command, &settings).await?,
        Command::Import { table, file } => return import(&settings, table, &file).await,
        Command::Registry { command } => registry(command, &settings).await?,
        Command::Serve { workers } => crate::serve::run_until_stopped(settings, workers).await?,
        Command::Publish {
            file,
            no_validate,
            as_publisher,
            binary,
        } => {
            let how = crate::publish::How {
                validate: !no_validate,
                as_publisher,
                binary,
            };
            return publish(&settings, &file, how).await;
        }
        Command::Dlq { command } => return dlq(command, &settings).await,
        Command::Retention { command } => retention(command, &settings).await?,
        Command::Tavolo { command } => crate::tavolo::run(command, &settings).await?,
        Command::Eviction {
            command:
                EvictionCommand::Rekey {
                    new_key_file,
                    write_key_file,
                    force,
                },
        } => rekey(&settings, &new_key_file, &write_key_file, force).await?,
        Command::Asylum { command } => asylum(command, &settings).await?,
        Command::Report { command } => return report(command, &settings).await,
        Command::Audit {
            kind,
            since,
            procedure,
            format,
        } => {
            let audit =
                crate::evictions::audit(&settings, kind, since.as_deref(), procedure.as_deref())
                    .await?;
            print!("{}", crate::evictions::format_audit(&audit, format)?);
        }
        Command::Timeline { id, format } => crate::timeline::print(&settings, &id, format).await?,
        Command::Status { format } => status(&settings, format).await?,
        Command::Bench(args) => {
            let mut out = std::io::stdout();
            return exact_or_failure(crate::bench::run(settings, args, &mut out).await, &mut out);
        }
        Command::Soak(args) => {
            let mut out = std::io::stdout();
            return exact_or_failure(crate::soak::run(settings, args, &mut out).await, &mut out);
        }
        Command::Console { command } => {
            return console(command.unwrap_or(ConsoleCommand::Serve), settings).await;
        }
        Command::Ids { command } => ids(command, &settings).await?,
        Command::Publishers {
            command: PublishersCommand::Token { command },
        } => crate::publishers::token(command, &settings, &mut std::io::stdout()).await?,
        Command::Demo { exit } => {
            let mut out = std::io::stdout();
            crate::demo::run(settings, !exit, &mut out).await?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The exit of a measuring command (`bench`, `soak`): a failure when an expected email was
/// missing or doubled.
fn exact_or_failure(exact: anyhow::Result<bool>, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    out.flush()?;
    if exact? {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("Some expected emails are missing or doubled (see the table).");
        Ok(ExitCode::FAILURE)
    }
}

/// `raccordo backup DIR` and `raccordo restore DIR [--force]`.
async fn backups(command: Command, settings: &Settings) -> anyhow::Result<()> {
    match command {
        Command::Backup(args) => {
            let manifest = crate::backup::backup(
                settings,
                &args.dir,
                args.definitions,
                args.pg_bin.as_deref(),
            )
            .await?;
            println!(
                "Backed up {} ({} tables, {} rows, migration {}, release {}) into {}: {} bytes, key fingerprint {}.",
                manifest.database,
                manifest.tables.len(),
                manifest.tables.values().sum::<i64>(),
                manifest.migration_version,
                manifest.release,
                args.dir.display(),
                manifest.dump.bytes,
                crate::backup::short(&manifest.pseudonym_key_fingerprint),
            );
        }
        Command::Restore(args) => {
            let overwrite = if args.force {
                crate::backup::Overwrite::Force
            } else {
                crate::backup::Overwrite::Refuse
            };
            let manifest =
                crate::backup::restore(settings, &args.dir, overwrite, args.pg_bin.as_deref())
                    .await?;
            print!("{}", restored(&manifest, &args.dir));
        }
        _ => {}
    }
    Ok(())
}

/// What a restore did and what to do next.
fn restored(manifest: &crate::backup::Manifest, dir: &Path) -> String {
    let mut text = format!(
        "Restored {} tables ({} rows, every count as in the backup) made {} at migration {}.\n\
         Next: `raccordo setup` migrates it to this release and declares the broker topology; then start the hub.\n",
        manifest.tables.len(),
        manifest.tables.values().sum::<i64>(),
        manifest.created_at,
        manifest.migration_version,
    );
    if let Some(definitions) = &manifest.definitions {
        text.push_str(&format!(
            "Broker definitions: {} (rabbitmqctl import_definitions).\n",
            dir.join(definitions).display()
        ));
    }
    text
}

/// `raccordo retention run [--dry-run]`: prunes (or counts) and prints the counts per kind.
async fn retention(command: RetentionCommand, settings: &Settings) -> anyhow::Result<()> {
    let RetentionCommand::Run { dry_run, format } = command;
    let report = crate::retention::command(settings, dry_run).await?;
    print!("{}", crate::retention::format(&report, format)?);
    Ok(())
}

/// `raccordo asylum rotation …`
async fn asylum(command: AsylumCommand, settings: &Settings) -> anyhow::Result<()> {
    let AsylumCommand::Rotation { command } = command;
    match command {
        RotationCommand::Pause { istat, until } => {
            print!(
                "{}",
                crate::domiciles::pause(settings, &istat, Some(until)).await?
            );
        }
        RotationCommand::Resume { istat } => {
            print!("{}", crate::domiciles::pause(settings, &istat, None).await?);
        }
        RotationCommand::List { format } => {
            let entries = crate::domiciles::list(settings).await?;
            print!("{}", crate::domiciles::format_list(&entries, format)?);
        }
    }
    Ok(())
}

async fn status(settings: &Settings, format: Format) -> anyhow::Result<()> {
    let status = crate::status::collect(settings).await?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&status)?),
        _ => print!("{}", crate::status::table(&status)),
    }
    Ok(())
}

/// `raccordo registry list|history`.
async fn registry(command: RegistryCommand, settings: &Settings) -> anyhow::Result<()> {
    match command {
        RegistryCommand::List { format } => {
            let referents = crate::registry::list(settings).await?;
            print!("{}", crate::registry::format_list(&referents, format)?);
        }
        RegistryCommand::History { referent, format } => {
            let changes = crate::registry::history(settings, &referent).await?;
            print!(
                "{}",
                crate::registry::format_history(&referent, &changes, format)?
            );
        }
    }
    Ok(())
}

async fn ids(command: IdsCommand, settings: &Settings) -> anyhow::Result<()> {
    let IdsCommand::Move {
        kind,
        id,
        to,
        publisher,
        court,
        by,
        reason,
    } = command;
    let kind = IdKind::parse(&kind).context("unit, facility or procedure")?;
    let request = crate::ids::MoveRequest {
        kind,
        id: &id,
        court: court.as_deref(),
        to_comune: &to,
        to_publisher: publisher.as_deref(),
        by: &by,
        reason: &reason,
    };
    println!("{}", crate::ids::move_id(settings, &request).await?);
    Ok(())
}

/// `raccordo console …`: serve it, or manage its users.
async fn console(command: ConsoleCommand, settings: Settings) -> anyhow::Result<ExitCode> {
    match command {
        ConsoleCommand::Serve => crate::serve::run_console_until_stopped(settings).await?,
        ConsoleCommand::HashPassword => {
            println!("{}", raccordo_console::hash_password(&read_password()?)?);
        }
        ConsoleCommand::User {
            command:
                ConsoleUserCommand::Add {
                    name,
                    role,
                    proxy_only,
                },
        } => {
            let hash = if proxy_only {
                None
            } else {
                Some(raccordo_console::hash_password(&read_password()?)?)
            };
            match raccordo_console::users::entry(&name, role, hash.as_deref()) {
                Ok(line) => {
                    eprintln!(
                        "Add this entry to console.operators (a list in the [console] section):"
                    );
                    println!("{line}");
                }
                Err(reason) => {
                    eprintln!("Error: {reason}");
                    return Ok(ExitCode::from(2));
                }
            }
        }
        ConsoleCommand::Users { format } => {
            let users = raccordo_console::users::list(&settings.console);
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&users)?),
                _ => print!(
                    "{}",
                    crate::table::render(
                        &["name", "role", "login", "note"],
                        &users
                            .iter()
                            .map(|u| vec![
                                u.name.clone(),
                                u.role.clone(),
                                u.login.clone(),
                                u.note.clone()
                            ])
                            .collect::<Vec<_>>(),
                    )
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line of standard input, without its line end.
fn read_password() -> anyhow::Result<String> {
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("Failed to read the password from standard input")?;
    Ok(password.trim_end_matches(['\r', '\n']).to_owned())
}

async fn setup(settings: &Settings, definitions: Option<PathBuf>) -> anyhow::Result<()> {
    if let Some(path) = definitions {
        crate::setup::write_definitions(settings, &path)?;
        println!(
            "RabbitMQ definitions for {} publisher(s) written to {}; set each user's password with rabbitmqctl change_password.",
            settings.publishers.users.len(),
            path.display()
        );
    }
    let r = crate::setup::run(settings).await?;
    println!(
        "Database {} {}; migrations applied; topology declared under prefix {}.",
        r.database,
        if r.created {
            "created"
        } else {
            "already present"
        },
        r.prefix
    );
    Ok(())
}

async fn import(settings: &Settings, table: Table, file: &Path) -> anyhow::Result<ExitCode> {
    let report = crate::import::run(settings, table, file).await?;
    if !report.errors.is_empty() {
        eprintln!(
            "Nothing imported: {} line(s) of {} are wrong.",
            report.errors.len(),
            file.display()
        );
        for e in &report.errors {
            eprintln!("  {e}");
        }
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "Imported {}: {} new, {} updated.",
        file.display(),
        report.inserted,
        report.updated
    );
    Ok(ExitCode::SUCCESS)
}

async fn publish(
    settings: &Settings,
    file: &Path,
    how: crate::publish::How,
) -> anyhow::Result<ExitCode> {
    let input: Box<dyn std::io::BufRead> = if file.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(
            std::fs::File::open(file)
                .with_context(|| format!("Failed to open {}", file.display()))?,
        ))
    };
    let tty = std::io::stderr().is_terminal();
    let report = crate::publish::run(settings, input, how, |n| {
        if tty {
            eprint!("\rpublished {n}");
        }
    })
    .await?;
    if tty {
        eprintln!();
    }
    for (line, reason) in &report.refused {
        eprintln!("line {line} not published: {reason}");
    }
    println!(
        "Published {} event(s) to {}.inbound; {} refused.",
        report.published,
        settings.amqp.prefix,
        report.refused.len()
    );
    if !report.refused.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

async fn rekey(
    settings: &Settings,
    new_key_file: &Path,
    write_key_file: &Path,
    force: bool,
) -> anyhow::Result<()> {
    let tty = std::io::stderr().is_terminal();
    let report = crate::keys::rekey(
        settings,
        new_key_file,
        write_key_file,
        force,
        |done, total| {
            if tty {
                eprint!("\rre-pseudonymised {done} of {total}");
            }
        },
    )
    .await?;
    if tty {
        eprintln!();
    }
    println!(
        "Re-pseudonymised {} procedure(s) and {} asylum case(s). The key chain is in {}: set eviction.pseudonym_key_file to it and restart the eviction and asylum workers.",
        report.procedures,
        report.cases,
        write_key_file.display()
    );
    Ok(())
}

async fn report(command: ReportCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    match command {
        ReportCommand::Tavolo(args) => crate::tavolo::print_report(settings, &args).await?,
        ReportCommand::Evictions {
            month,
            format,
            send,
        } => {
            let units = crate::evictions::report(settings, month).await?;
            print!(
                "{}",
                crate::evictions::format_report(month, &units, format)?
            );
            if send {
                let (sent, published) = crate::evictions::send(settings, month).await?;
                eprint!("{}", crate::evictions::describe_sent(sent, &published));
            }
        }
        ReportCommand::Domiciles { year, format } => {
            let lines = crate::domiciles::report(settings, year).await?;
            print!("{}", crate::domiciles::format_report(year, &lines, format)?);
        }
        ReportCommand::Coverage { zona, format, send } => {
            let report = crate::report_coverage::coverage(settings, zona.as_deref()).await?;
            print!(
                "{}",
                crate::report_coverage::format_coverage(&report, format)?
            );
            if send {
                let (sent, published) =
                    crate::report_coverage::send(settings, zona.as_deref()).await?;
                eprint!(
                    "{}",
                    crate::report_coverage::describe_sent(&sent, &published)
                );
            }
        }
        ReportCommand::Priorities { format, send } => {
            let list = crate::report_priorities::priorities(settings).await?;
            print!(
                "{}",
                crate::report_priorities::format_priorities(&list, format)?
            );
            if send {
                let (sent, published) = crate::report_priorities::send(settings).await?;
                eprint!(
                    "{}",
                    crate::report_priorities::describe_sent(&sent, &published)
                );
            }
        }
        ReportCommand::Facilities {
            comune,
            zona,
            format,
        } => {
            let census =
                crate::report_coverage::facilities(settings, comune.as_deref(), zona.as_deref())
                    .await?;
            print!(
                "{}",
                crate::report_coverage::format_facilities(&census, format)?
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn dlq(command: DlqCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    match command {
        DlqCommand::List { format, queue } => {
            let messages = crate::dlq::list(settings, queue).await?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&messages)?),
                Format::Csv | Format::Table => {
                    if messages.is_empty() {
                        println!("No dead or parked messages.");
                    } else {
                        print!("{}", crate::dlq::table(&messages));
                    }
                }
            }
        }
        DlqCommand::Show { id } => match crate::dlq::show(settings, &id).await? {
            Some(m) => print!("{}", crate::dlq::detail(&m)),
            None => {
                eprintln!("No dead or parked message has id {id} (see raccordo dlq list).");
                return Ok(ExitCode::FAILURE);
            }
        },
        DlqCommand::Replay { id, all: _, queue } => {
            let report = crate::dlq::replay(settings, queue, id.as_deref()).await?;
            if id.is_some() && report.replayed == 0 {
                eprintln!("No held message with that id was replayed (see raccordo dlq list).");
                return Ok(ExitCode::FAILURE);
            }
            println!(
                "Replayed {} message(s); {} left in place.",
                report.replayed, report.kept
            );
        }
        DlqCommand::Purge {
            id: Some(id),
            queue,
        } => match crate::dlq::purge_one(settings, queue, &id).await? {
            Some(holding) => println!("Purged message {} from {holding:?}.", printable(&id)),
            None => {
                eprintln!("No held message has that id (see raccordo dlq list).");
                return Ok(ExitCode::FAILURE);
            }
        },
        DlqCommand::Purge { id: None, queue } => {
            for (holding, n) in crate::dlq::purge(settings, queue).await? {
                println!("Purged {n} message(s) from {holding:?}.");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
