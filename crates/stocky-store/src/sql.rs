//! The one SQL dialect the store's logic speaks, and the connection interface each engine
//! ([`crate::engine`]) implements.
//!
//! Statements are written once, in the subset SQLite and PostgreSQL share: `$1`-style
//! placeholders (the SQLite engine rewrites them to `?1`), `ON CONFLICT … DO NOTHING /
//! DO UPDATE`, `COUNT(*) FILTER (WHERE …)`, `CAST(… AS BIGINT)` around sums. Every integer
//! column is a 64-bit integer on both engines and every text column is text, so an [`Arg`]
//! binds the same way on both and a [`Row`] holds only integers, text and NULLs (booleans
//! arrive as 0/1).
//!
//! Invariants: a [`Conn`] is used by one thread at a time; after an error that
//! [`DbError::is_connection`] reports, the connection is discarded, never reused.

/// A statement parameter.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Int(i64),
    Text(&'a str),
    OptInt(Option<i64>),
    OptText(Option<&'a str>),
    /// A list of integers, tested with [`Conn::any`].
    Ints(&'a [i64]),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(v)
    }
}
impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(v)
    }
}
impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::OptInt(v)
    }
}
impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::OptText(v)
    }
}
impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Arg::OptText(v.as_deref())
    }
}

/// Statement parameters: `args![tenant, id as i64, maybe_text]`.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        &[$($crate::sql::Arg::from($value)),*]
    };
}
pub(crate) use args;

/// A column value as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Null,
    Int(i64),
    Text(String),
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(pub(crate) Vec<Val>);

impl Row {
    fn at(&self, i: usize) -> Result<&Val, DbError> {
        self.0
            .get(i)
            .ok_or_else(|| DbError::other(format!("column {i} out of range")))
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, DbError> {
        match self.at(i)? {
            Val::Null => Ok(None),
            Val::Int(v) => Ok(Some(*v)),
            Val::Text(t) => Err(DbError::other(format!(
                "column {i}: expected an integer, found text {t:?}"
            ))),
        }
    }

    pub fn int(&self, i: usize) -> Result<i64, DbError> {
        self.opt_int(i)?
            .ok_or_else(|| DbError::other(format!("column {i}: unexpected NULL")))
    }

    pub fn bool(&self, i: usize) -> Result<bool, DbError> {
        Ok(self.int(i)? != 0)
    }

    /// Takes a text column out of the row (a second take of the same column gives NULL).
    pub fn opt_text(&mut self, i: usize) -> Result<Option<String>, DbError> {
        self.at(i)?;
        match std::mem::replace(&mut self.0[i], Val::Null) {
            Val::Null => Ok(None),
            Val::Text(t) => Ok(Some(t)),
            Val::Int(v) => Err(DbError::other(format!(
                "column {i}: expected text, found integer {v}"
            ))),
        }
    }

    pub fn text(&mut self, i: usize) -> Result<String, DbError> {
        self.opt_text(i)?
            .ok_or_else(|| DbError::other(format!("column {i}: unexpected NULL")))
    }
}

/// What kind of failure a database error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    /// A unique or primary-key constraint refused the write.
    Unique,
    /// The database cannot be reached or the connection broke: retry later.
    Connection,
    /// A deadlock or serialization failure: the transaction may simply be run again.
    Conflict,
    Other,
}

/// A database error, engine-neutral. Its message never contains credentials.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DbError {
    pub kind: DbErrorKind,
    pub message: String,
}

impl DbError {
    pub fn other(message: impl Into<String>) -> Self {
        Self {
            kind: DbErrorKind::Other,
            message: message.into(),
        }
    }

    pub fn connection(message: impl Into<String>) -> Self {
        Self {
            kind: DbErrorKind::Connection,
            message: message.into(),
        }
    }

    pub fn is_unique(&self) -> bool {
        self.kind == DbErrorKind::Unique
    }

    pub fn is_connection(&self) -> bool {
        self.kind == DbErrorKind::Connection
    }
}

/// Most rows one multi-row statement carries: far below both engines' parameter limits
/// (PostgreSQL 65,535; SQLite 32,766) at the widest row the store writes (11 columns).
pub const MAX_ROWS_PER_STATEMENT: usize = 256;

/// Up to this many rows go in one statement as they are; more are cut in powers of two.
const SMALL_STATEMENT: usize = 8;

/// `rows` cut for multi-row statements: up to [`SMALL_STATEMENT`] rows in one chunk (a
/// single command's rows: one statement), more in chunks a power of two long, largest first
/// (100 rows → 64 + 32 + 4). A table's statements thus take at most 13 shapes and the
/// engines' prepared-statement caches keep every one of them (a statement prepared again is
/// a round trip more on PostgreSQL).
pub fn statement_chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let most = rest.len().min(MAX_ROWS_PER_STATEMENT);
        let size = if most <= SMALL_STATEMENT {
            most
        } else {
            1 << (usize::BITS - 1 - most.leading_zeros())
        };
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}

/// `($first, …), (…), …`: `rows` tuples of `width` numbered placeholders. Multi-row
/// statements take only a few shapes (see [`statement_chunks`]) but are built at every
/// batch, so each thread keeps the lists it has built (at most [`PLACEHOLDER_SHAPES`]).
pub fn placeholder_rows(first: usize, rows: usize, width: usize) -> std::rc::Rc<str> {
    thread_local! {
        static BUILT: std::cell::RefCell<std::collections::HashMap<(usize, usize, usize), std::rc::Rc<str>>> =
            std::cell::RefCell::default();
    }
    BUILT.with(|built| {
        let mut built = built.borrow_mut();
        if let Some(list) = built.get(&(first, rows, width)) {
            return list.clone();
        }
        if built.len() >= PLACEHOLDER_SHAPES {
            built.clear();
        }
        let list: std::rc::Rc<str> = build_placeholder_rows(first, rows, width).into();
        built.insert((first, rows, width), list.clone());
        list
    })
}

/// The placeholder lists a thread keeps at most (then it starts again).
const PLACEHOLDER_SHAPES: usize = 512;

fn build_placeholder_rows(first: usize, rows: usize, width: usize) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(rows * width * 6);
    for row in 0..rows {
        out.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..width {
            if column > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "${}", first + row * width + column);
        }
        out.push(')');
    }
    out
}

/// How a transaction begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxMode {
    /// The writer's transaction: takes the write lock up front (SQLite `IMMEDIATE`);
    /// PostgreSQL runs it at READ COMMITTED and serialises per tenant with row locks.
    Write,
    /// A read that must see one snapshot across statements.
    Read,
    /// A short read-write transaction of account data.
    Plain,
}

/// One open database connection.
pub trait Conn: Send {
    /// Runs a statement; returns the number of rows it changed.
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, DbError>;
    /// Runs a query and returns all its rows.
    fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, DbError>;
    /// Runs one or more parameterless statements.
    fn batch(&mut self, sql: &str) -> Result<(), DbError>;
    fn begin(&mut self, mode: TxMode) -> Result<(), DbError>;
    /// ` FOR UPDATE` where the engine locks rows (PostgreSQL), empty where the whole
    /// database is locked by the write transaction (SQLite).
    fn row_lock(&self) -> &'static str;
    /// Whether the connection is unusable and must be replaced.
    fn is_broken(&self) -> bool;
    /// Membership in the [`Arg::Ints`] parameter `$n`: `= ANY($n)` on PostgreSQL (an
    /// array), `IN (SELECT value FROM json_each($n))` on SQLite (the list as JSON). One
    /// statement shape whatever the list's length.
    fn any(&self, n: usize) -> String;

    /// Inserts `rows` (row-major, `width` values each): `head` is
    /// `INSERT INTO t (c1, …, cn)`, `tail` what follows the rows (`ON CONFLICT …`, or
    /// empty). By default multi-row `VALUES` statements ([`statement_chunks`]); PostgreSQL
    /// sends one statement of arrays whatever the row count (a round trip each, there).
    /// Every row gives a column the same kind of [`Arg`].
    fn insert_rows(
        &mut self,
        head: &str,
        tail: &str,
        width: usize,
        rows: &[Arg<'_>],
    ) -> Result<(), DbError> {
        insert_values(self, head, tail, width, rows)
    }

    /// The first row, if any.
    fn query_opt(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// Exactly the first row (aggregates always have one).
    fn query_one(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Row, DbError> {
        self.query_opt(sql, args)?
            .ok_or_else(|| DbError::other("the query returned no row"))
    }

    fn commit(&mut self) -> Result<(), DbError> {
        self.batch("COMMIT")
    }

    fn rollback(&mut self) -> Result<(), DbError> {
        self.batch("ROLLBACK")
    }
}

/// [`Conn::insert_rows`] as multi-row `VALUES` statements, one per [`statement_chunks`].
pub fn insert_values<C: Conn + ?Sized>(
    conn: &mut C,
    head: &str,
    tail: &str,
    width: usize,
    rows: &[Arg<'_>],
) -> Result<(), DbError> {
    let all: Vec<&[Arg<'_>]> = rows.chunks_exact(width).collect();
    for chunk in statement_chunks(&all) {
        let sql = format!(
            "{head} VALUES {} {tail}",
            placeholder_rows(1, chunk.len(), width)
        );
        conn.execute(&sql, &chunk.concat())?;
    }
    Ok(())
}

/// Runs `f` in a transaction: committed when it returns `Ok`, rolled back otherwise.
pub fn in_tx<T, E: From<DbError>>(
    conn: &mut dyn Conn,
    mode: TxMode,
    f: impl FnOnce(&mut dyn Conn) -> Result<T, E>,
) -> Result<T, E> {
    conn.begin(mode)?;
    match f(conn) {
        Ok(value) => {
            if let Err(e) = conn.commit() {
                let _ = conn.rollback();
                return Err(e.into());
            }
            Ok(value)
        }
        Err(e) => {
            let _ = conn.rollback();
            Err(e)
        }
    }
}

#[cfg(test)]
mod chunk_tests {
    use super::*;

    #[test]
    fn statement_chunks_keep_small_counts_whole_and_cut_the_rest_in_powers_of_two() {
        let sizes = |n: usize| {
            let rows = vec![0u8; n];
            statement_chunks(&rows).map(<[u8]>::len).collect::<Vec<_>>()
        };
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), vec![1]);
        assert_eq!(sizes(3), vec![3]);
        assert_eq!(sizes(8), vec![8]);
        assert_eq!(sizes(13), vec![8, 5]);
        assert_eq!(sizes(100), vec![64, 32, 4]);
        assert_eq!(sizes(256), vec![256]);
        assert_eq!(sizes(600), vec![256, 256, 64, 16, 8]);
    }
}
