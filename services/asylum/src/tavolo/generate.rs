//! A year of generated asylum data, for measuring the annual report (A6) and for checking
//! it figure by figure: cases with their categories and interventions, waiting-list,
//! placement and exit facts, domiciles assigned by a smooth weighted round robin. The same
//! seed gives the same year. Rows are inserted directly (no events), in batches; nothing is
//! a real person and no `person` is ever written.
//!
//! A few facts fall outside the year on purpose (late December before, January after, a
//! placement of the next year), so the report's bounds are exercised.

use sqlx::PgConnection;
use time::{Date, Duration, OffsetDateTime};

use super::report::{CATEGORIES, year_bounds};

/// A deterministic generator (splitmix64): the same seed, the same year.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A comune as the generator needs it.
#[derive(Debug, Clone)]
pub struct GenComune {
    pub istat: String,
    pub zona: String,
    pub popolazione: i64,
    pub domicilio: bool,
}

/// A desk: its referent id and the comune it is scoped to.
#[derive(Debug, Clone)]
pub struct GenDesk {
    pub referent_id: String,
    pub comune_istat: String,
}

/// One generated case and everything that happened to it.
#[derive(Debug, Clone)]
pub struct GenCase {
    pub case_key: String,
    pub desk: usize,
    pub comune: usize,
    pub categories: Vec<&'static str>,
    pub consent: bool,
    pub reported_at: OffsetDateTime,
    /// (action, at) in order.
    pub interventions: Vec<(&'static str, OffsetDateTime)>,
    /// (status, since, placed comune) in order.
    pub placements: Vec<(&'static str, Date, Option<usize>)>,
    /// (people, requested_at, assigned comune, assigned_at).
    pub domicile: Option<(i32, OffsetDateTime, Option<usize>, Option<OffsetDateTime>)>,
}

/// A generated year.
#[derive(Debug, Clone)]
pub struct GenYear {
    pub year: i32,
    pub comuni: Vec<GenComune>,
    pub desks: Vec<GenDesk>,
    pub cases: Vec<GenCase>,
}

/// Generates `cases` cases of `year` (a few just outside it) over `comuni` and `desks`.
pub fn generate(
    year: i32,
    cases: usize,
    comuni: Vec<GenComune>,
    desks: Vec<GenDesk>,
    seed: u64,
) -> Option<GenYear> {
    let (start, end) = year_bounds(year)?;
    if comuni.is_empty() || desks.is_empty() {
        return None;
    }
    let mut rng = Rng::new(seed);
    let mut rotation = Rotation::new(&comuni);
    let span = (end - start).whole_seconds().max(1) as u64;
    let by_zona = |zona: &str| -> Vec<usize> {
        comuni
            .iter()
            .enumerate()
            .filter(|(_, c)| c.zona == zona)
            .map(|(i, _)| i)
            .collect()
    };
    let mut out = Vec::with_capacity(cases);
    for i in 0..cases {
        // 2% a few days before the year, 1% a few days after.
        let offset = match rng.below(100) {
            0 | 1 => -(rng.below(5 * 86_400) as i64) - 1,
            2 => span as i64 + rng.below(5 * 86_400) as i64,
            _ => rng.below(span) as i64,
        };
        let reported_at = start + Duration::seconds(offset);
        let desk = rng.below(desks.len() as u64) as usize;
        let comune = rng.below(comuni.len() as u64) as usize;
        let desk_zona = comuni
            .iter()
            .find(|c| c.istat == desks[desk].comune_istat)
            .map(|c| c.zona.clone())
            .unwrap_or_default();
        let mut case = GenCase {
            case_key: format!("{:016x}{:016x}", rng.next_u64(), i),
            desk,
            comune,
            categories: categories(&mut rng),
            consent: rng.chance(60),
            reported_at,
            interventions: interventions(&mut rng, reported_at),
            placements: Vec::new(),
            domicile: None,
        };
        if rng.chance(40) {
            let same_zona = by_zona(&desk_zona);
            case.placements = placements(&mut rng, reported_at, comuni.len(), &same_zona);
        }
        if rng.chance(20) {
            let requested_at = reported_at + Duration::seconds(rng.below(5 * 86_400) as i64);
            let people = 1 + rng.below(5) as i32;
            let assigned_at = (!rng.chance(2))
                .then(|| requested_at + Duration::seconds(1 + rng.below(60) as i64));
            case.domicile = Some((people, requested_at, None, assigned_at));
        }
        out.push(case);
    }
    // The rotation assigns in the order the requests arrive.
    let mut requests: Vec<(OffsetDateTime, usize)> = out
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.domicile.and_then(|d| d.3).map(|at| (at, i)))
        .collect();
    requests.sort();
    for (_, i) in requests {
        if let Some(d) = out[i].domicile.as_mut() {
            d.2 = rotation.next();
        }
    }
    Some(GenYear {
        year,
        comuni,
        desks,
        cases: out,
    })
}

fn categories(rng: &mut Rng) -> Vec<&'static str> {
    let n = 1 + rng.below(3) as usize;
    let mut picked: Vec<&'static str> = Vec::with_capacity(n);
    while picked.len() < n {
        let c = CATEGORIES[rng.below(CATEGORIES.len() as u64) as usize];
        if !picked.contains(&c) {
            picked.push(c);
        }
    }
    picked
}

/// 85% get a first intervention after 0–30 hours; some are closed later; the rest only
/// closed, or nothing.
fn interventions(
    rng: &mut Rng,
    reported_at: OffsetDateTime,
) -> Vec<(&'static str, OffsetDateTime)> {
    let mut out = Vec::new();
    let mut at = reported_at;
    if rng.chance(85) {
        at += Duration::seconds(rng.below(30 * 3600) as i64);
        let action = if rng.chance(50) {
            "presa_in_carico"
        } else {
            "primo_intervento"
        };
        out.push((action, at));
        if rng.chance(30) {
            at += Duration::seconds(rng.below(48 * 3600) as i64);
            out.push(("primo_intervento", at));
        }
    }
    if rng.chance(40) {
        at += Duration::seconds(1 + rng.below(90 * 86_400) as i64);
        out.push(("chiuso", at));
    }
    out
}

/// The waiting list: waiting (sometimes twice), then placed — 80% in the desk's zona —,
/// then exited or withdrawn.
fn placements(
    rng: &mut Rng,
    reported_at: OffsetDateTime,
    comuni: usize,
    same_zona: &[usize],
) -> Vec<(&'static str, Date, Option<usize>)> {
    let mut since = reported_at.date() + Duration::days(rng.below(30) as i64);
    let mut out = vec![("waiting", since, None)];
    if rng.chance(15) {
        since += Duration::days(rng.below(20) as i64);
        out.push(("waiting", since, None));
    }
    if rng.chance(10) {
        since += Duration::days(1 + rng.below(60) as i64);
        out.push(("withdrawn", since, None));
        return out;
    }
    if rng.chance(70) {
        since += Duration::days(1 + rng.below(150) as i64);
        let comune = if !same_zona.is_empty() && rng.chance(80) {
            same_zona[rng.below(same_zona.len() as u64) as usize]
        } else {
            rng.below(comuni as u64) as usize
        };
        out.push(("placed", since, Some(comune)));
        if rng.chance(60) {
            since += Duration::days(30 + rng.below(500) as i64);
            out.push(("exited", since, None));
        }
    }
    out
}

/// A smooth weighted round robin by population (ties by ISTAT), as A3's rotation.
struct Rotation {
    members: Vec<(usize, i64, i64)>,
}

impl Rotation {
    fn new(comuni: &[GenComune]) -> Self {
        let mut members: Vec<(usize, i64, i64)> = comuni
            .iter()
            .enumerate()
            .filter(|(_, c)| c.domicilio && c.popolazione > 0)
            .map(|(i, c)| (i, c.popolazione, 0))
            .collect();
        members.sort_by(|a, b| comuni[a.0].istat.cmp(&comuni[b.0].istat));
        Self { members }
    }

    fn next(&mut self) -> Option<usize> {
        let total: i64 = self.members.iter().map(|m| m.1).sum();
        for m in &mut self.members {
            m.2 += m.1;
        }
        let best = self
            .members
            .iter_mut()
            .reduce(|a, b| if b.2 > a.2 { b } else { a })?;
        best.2 -= total;
        Some(best.0)
    }
}

/// Inserts the desks as `sportello_asilo` referents scoped to their comune.
pub async fn insert_desks(conn: &mut PgConnection, year: &GenYear) -> Result<(), sqlx::Error> {
    for d in &year.desks {
        sqlx::query(
            r#"
            INSERT INTO referents (referent_id, institution, role, email, scope_kind, scope_value)
            VALUES ($1, 'Sportello provinciale asilo', 'sportello_asilo', $2, 'comune', $3)
            ON CONFLICT (referent_id) DO NOTHING
            "#,
        )
        .bind(&d.referent_id)
        .bind(format!("{}@sportelli.example.org", d.referent_id))
        .bind(&d.comune_istat)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Inserts the year's rows, `batch` cases at a time.
pub async fn insert_year(
    conn: &mut PgConnection,
    year: &GenYear,
    batch: usize,
) -> Result<(), sqlx::Error> {
    for chunk in year.cases.chunks(batch.max(1)) {
        insert_cases(conn, year, chunk).await?;
        insert_interventions(conn, chunk).await?;
        insert_placements(conn, year, chunk).await?;
        insert_domiciles(conn, year, chunk).await?;
    }
    Ok(())
}

async fn insert_cases(
    conn: &mut PgConnection,
    year: &GenYear,
    chunk: &[GenCase],
) -> Result<(), sqlx::Error> {
    let first =
        |c: &GenCase, action: &str| c.interventions.iter().find(|i| i.0 == action).map(|i| i.1);
    sqlx::query(
        r#"
        INSERT INTO asylum_cases (case_key, desk, comune_istat, categories, consent,
                                  reported_at, received_at, publisher, first_intervention_at,
                                  taken_in_charge_at, closed_at)
        SELECT k, d, c, string_to_array(cat, ','), con, r, r, 'generator', f, t, x
        FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BOOL[],
                    $6::TIMESTAMPTZ[], $7::TIMESTAMPTZ[], $8::TIMESTAMPTZ[], $9::TIMESTAMPTZ[])
             AS u (k, d, c, cat, con, r, f, t, x)
        "#,
    )
    .bind(chunk.iter().map(|c| c.case_key.clone()).collect::<Vec<_>>())
    .bind(
        chunk
            .iter()
            .map(|c| year.desks[c.desk].referent_id.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        chunk
            .iter()
            .map(|c| year.comuni[c.comune].istat.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        chunk
            .iter()
            .map(|c| c.categories.join(","))
            .collect::<Vec<_>>(),
    )
    .bind(chunk.iter().map(|c| c.consent).collect::<Vec<_>>())
    .bind(chunk.iter().map(|c| c.reported_at).collect::<Vec<_>>())
    .bind(
        chunk
            .iter()
            .map(|c| first(c, "primo_intervento"))
            .collect::<Vec<_>>(),
    )
    .bind(
        chunk
            .iter()
            .map(|c| first(c, "presa_in_carico"))
            .collect::<Vec<_>>(),
    )
    .bind(chunk.iter().map(|c| first(c, "chiuso")).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_interventions(
    conn: &mut PgConnection,
    chunk: &[GenCase],
) -> Result<(), sqlx::Error> {
    let rows: Vec<(&str, &str, OffsetDateTime)> = chunk
        .iter()
        .flat_map(|c| {
            c.interventions
                .iter()
                .map(|(a, at)| (c.case_key.as_str(), *a, *at))
        })
        .collect();
    sqlx::query(
        r#"
        INSERT INTO asylum_interventions (case_key, action, at, by_service, received_at)
        SELECT k, a, t, 'servizi sociali', t
        FROM unnest($1::TEXT[], $2::TEXT[], $3::TIMESTAMPTZ[]) AS u (k, a, t)
        "#,
    )
    .bind(rows.iter().map(|r| r.0).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.2).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_placements(
    conn: &mut PgConnection,
    year: &GenYear,
    chunk: &[GenCase],
) -> Result<(), sqlx::Error> {
    let mut keys = Vec::new();
    let mut statuses = Vec::new();
    let mut priorities: Vec<Option<&str>> = Vec::new();
    let mut sinces = Vec::new();
    let mut desks = Vec::new();
    let mut facilities: Vec<Option<String>> = Vec::new();
    let mut comuni: Vec<Option<String>> = Vec::new();
    for c in chunk {
        for (status, since, comune) in &c.placements {
            keys.push(c.case_key.clone());
            statuses.push(*status);
            priorities.push((*status == "waiting").then_some("media"));
            sinces.push(*since);
            desks.push(year.desks[c.desk].referent_id.clone());
            facilities.push(comune.map(|i| format!("SPRAR-{}", year.comuni[i].istat)));
            comuni.push(comune.map(|i| year.comuni[i].istat.clone()));
        }
    }
    sqlx::query(
        r#"
        INSERT INTO asylum_placement_history (case_key, status, priority, since, desk,
                                              facility_id, comune_istat, recorded_at)
        SELECT k, s, p, d, desk, f, c, now()
        FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::DATE[], $5::TEXT[], $6::TEXT[],
                    $7::TEXT[]) AS u (k, s, p, d, desk, f, c)
        "#,
    )
    .bind(keys)
    .bind(statuses)
    .bind(priorities)
    .bind(sinces)
    .bind(desks)
    .bind(facilities)
    .bind(comuni)
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_domiciles(
    conn: &mut PgConnection,
    year: &GenYear,
    chunk: &[GenCase],
) -> Result<(), sqlx::Error> {
    let rows: Vec<_> = chunk
        .iter()
        .filter_map(|c| c.domicile.map(|d| (c, d)))
        .collect();
    sqlx::query(
        r#"
        INSERT INTO asylum_domiciles (request_id, case_key, desk, people, requested_at,
                                      comune_istat, assigned_at, publisher)
        SELECT 'dom-' || k, k, d, p, r, c, a, 'generator'
        FROM unnest($1::TEXT[], $2::TEXT[], $3::INT[], $4::TIMESTAMPTZ[], $5::TEXT[],
                    $6::TIMESTAMPTZ[]) AS u (k, d, p, r, c, a)
        "#,
    )
    .bind(
        rows.iter()
            .map(|(c, _)| c.case_key.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|(c, _)| year.desks[c.desk].referent_id.clone())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|(_, d)| d.0).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, d)| d.1).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|(_, d)| d.2.map(|i| year.comuni[i].istat.clone()))
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|(_, d)| d.3).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comuni() -> Vec<GenComune> {
        [
            ("015002", 300, true),
            ("015001", 100, true),
            ("015003", 50, false),
        ]
        .iter()
        .map(|(istat, pop, dom)| GenComune {
            istat: (*istat).into(),
            zona: "Z".into(),
            popolazione: *pop,
            domicilio: *dom,
        })
        .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_year() {
        let desks = vec![GenDesk {
            referent_id: "sportello-1".into(),
            comune_istat: "015001".into(),
        }];
        let a = generate(2025, 200, comuni(), desks.clone(), 7).expect("a year");
        let b = generate(2025, 200, comuni(), desks, 7).expect("a year");
        let keys = |y: &GenYear| {
            y.cases
                .iter()
                .map(|c| c.case_key.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&a), keys(&b));
        assert_eq!(a.cases[17].reported_at, b.cases[17].reported_at);
    }

    #[test]
    fn the_rotation_follows_population_and_skips_comuni_outside_it() {
        let mut r = Rotation::new(&comuni());
        let picks: Vec<usize> = (0..8).filter_map(|_| r.next()).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 6);
        assert_eq!(picks.iter().filter(|&&i| i == 1).count(), 2);
    }
}
