//! Snapshot files: a partition's snapshot is written to, kept in, read from and installed out of
//! a file, a frame at a time, so neither building, sending nor installing one holds the whole
//! state in memory.
//!
//! ```text
//!   <partition dir>/snapshots/<snapshot id>.snap    the current snapshot (only the newest is kept;
//!                                                    state.redb's `snapshot` table names it)
//!   <partition dir>/snapshots/<snapshot id>.snap.tmp  being built      (removed on open)
//!   <partition dir>/snapshots/incoming-<n>.snap     being received    (removed when dropped, on open)
//!
//!   file  = magic "HFSNAP\0\n" (8 bytes) | format u8 (= 1) | frame*
//!   frame = length u32 big-endian | codec::encode(Frame)  (version byte + named MessagePack)
//!   Header{meta, commands_applied} · (Table{name} · Rows[(key, value)…]*)* · End{tables, rows}
//! ```
//! Rows come in key order per table, grouped into frames of about 1 MiB; the `End` frame's
//! counts prove the file complete. A file without the magic is a snapshot of the previous
//! release: one codec-encoded [`SnapshotBody`] (those were built in memory, so read whole).

use crate::Error;
use crate::records::SnapshotMetaRecord;
use crate::tables;
use holdfast_types::codec;
use redb::{ReadTransaction, ReadableTable, TableHandle, WriteTransaction};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::fs::{self, File};
use std::future::Future;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::oneshot;

/// The first bytes of every snapshot file of this format.
pub(crate) const MAGIC: [u8; 8] = *b"HFSNAP\0\n";
/// The file format version written after the magic.
pub(crate) const FORMAT: u8 = 1;
/// Largest frame read back: a row group plus one row of the largest size a partition stores.
const MAX_FRAME: usize = 256 << 20;
/// Rows are grouped into frames of about this many bytes.
const GROUP_BYTES: usize = 1 << 20;
/// Buffer between the file and the frame encoder or decoder.
pub(crate) const IO_BUFFER: usize = 1 << 20;
const SUFFIX: &str = ".snap";
const TEMP_SUFFIX: &str = ".snap.tmp";
const INCOMING_PREFIX: &str = "incoming-";

type Rows = Vec<(ByteBuf, ByteBuf)>;

/// A snapshot's payload as the previous release stored it: the whole applied state in one blob.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotBody {
    pub(crate) state: Rows,
    pub(crate) commands_applied: u64,
    /// The invocation tables, by table name (absent in snapshots of older releases).
    #[serde(default)]
    pub(crate) tables: Vec<(String, Rows)>,
}

/// One frame of a snapshot file.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Frame {
    /// The first frame: what the file covers.
    Header {
        meta: Option<SnapshotMetaRecord>,
        commands_applied: u64,
    },
    /// The rows up to the next `Table` frame belong to this table.
    Table { name: String },
    /// Rows of the current table, in key order.
    Rows(Rows),
    /// The last frame: how many tables and rows came before it.
    End { tables: u64, rows: u64 },
}

/// Why a snapshot file cannot be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FormatError {
    /// Written by a newer release.
    #[error("snapshot file format {0} is not supported (this release reads format {FORMAT})")]
    Version(u8),
    /// A frame longer than any this release writes.
    #[error("snapshot frame of {0} bytes exceeds the limit of {MAX_FRAME} bytes")]
    FrameTooLarge(usize),
    /// The file ends before its `End` frame (a partial transfer or a torn write).
    #[error("snapshot file ends before its end frame")]
    Truncated,
    /// The frames are not in the documented order.
    #[error("snapshot file is malformed: {0}")]
    Malformed(&'static str),
    /// The `End` frame's counts differ from what the file held.
    #[error(
        "snapshot file holds {tables} tables and {rows} rows, its end frame says {want_tables} and {want_rows}"
    )]
    Counts {
        tables: u64,
        rows: u64,
        want_tables: u64,
        want_rows: u64,
    },
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn format_error(path: &Path, error: FormatError) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, error),
    }
}

/// What writing or installing a snapshot file went through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) tables: u64,
    pub(crate) rows: u64,
}

fn write_frame(out: &mut impl Write, frame: &Frame, path: &Path) -> Result<(), Error> {
    let bytes = codec::encode(frame)?;
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|len| *len as usize <= MAX_FRAME)
        .ok_or_else(|| format_error(path, FormatError::FrameTooLarge(bytes.len())))?;
    out.write_all(&len.to_be_bytes()).map_err(io_error(path))?;
    out.write_all(&bytes).map_err(io_error(path))
}

/// Writes every table of the partition as read in `txn`, a row group at a time.
pub(crate) fn write_state(
    txn: &ReadTransaction,
    meta: SnapshotMetaRecord,
    commands_applied: u64,
    out: &mut impl Write,
    path: &Path,
) -> Result<Counts, Error> {
    out.write_all(&MAGIC).map_err(io_error(path))?;
    out.write_all(&[FORMAT]).map_err(io_error(path))?;
    let header = Frame::Header {
        meta: Some(meta),
        commands_applied,
    };
    write_frame(out, &header, path)?;
    let mut counts = Counts::default();
    for definition in tables::ALL {
        let name = definition.name().to_owned();
        write_frame(out, &Frame::Table { name }, path)?;
        counts.tables += 1;
        let table = txn.open_table(definition)?;
        let (mut group, mut bytes) = (Rows::new(), 0usize);
        for item in table.iter()? {
            let (key, value) = item?;
            bytes += key.value().len() + value.value().len();
            group.push((ByteBuf::from(key.value()), ByteBuf::from(value.value())));
            counts.rows += 1;
            if bytes >= GROUP_BYTES {
                write_frame(out, &Frame::Rows(std::mem::take(&mut group)), path)?;
                bytes = 0;
            }
        }
        if !group.is_empty() {
            write_frame(out, &Frame::Rows(group), path)?;
        }
    }
    let end = Frame::End {
        tables: counts.tables,
        rows: counts.rows,
    };
    write_frame(out, &end, path)?;
    Ok(counts)
}

/// Writes the previous release's blob in this release's format (converting a data dir).
pub(crate) fn write_legacy(
    body: SnapshotBody,
    meta: SnapshotMetaRecord,
    out: &mut impl Write,
    path: &Path,
) -> Result<Counts, Error> {
    out.write_all(&MAGIC).map_err(io_error(path))?;
    out.write_all(&[FORMAT]).map_err(io_error(path))?;
    let mut counts = Counts::default();
    for frame in legacy_frames(body) {
        match frame {
            Frame::Header {
                commands_applied, ..
            } => {
                let header = Frame::Header {
                    meta: Some(meta.clone()),
                    commands_applied,
                };
                write_frame(out, &header, path)?;
            }
            Frame::Rows(rows) => {
                counts.rows += rows.len() as u64;
                let (mut group, mut bytes) = (Rows::new(), 0usize);
                for row in rows {
                    bytes += row.0.len() + row.1.len();
                    group.push(row);
                    if bytes >= GROUP_BYTES {
                        write_frame(out, &Frame::Rows(std::mem::take(&mut group)), path)?;
                        bytes = 0;
                    }
                }
                if !group.is_empty() {
                    write_frame(out, &Frame::Rows(group), path)?;
                }
            }
            Frame::Table { .. } => {
                counts.tables += 1;
                write_frame(out, &frame, path)?;
            }
            Frame::End { .. } => write_frame(out, &frame, path)?,
        }
    }
    Ok(counts)
}

/// The frames of a snapshot file, read one at a time (or, for the previous release's format,
/// out of the blob read whole).
pub(crate) enum Frames<R> {
    File { input: R, path: PathBuf },
    Legacy(std::vec::IntoIter<Frame>),
}

impl<R: Read> Frames<R> {
    /// Reads the file's head and tells the two formats apart.
    pub(crate) fn open(mut input: R, path: &Path) -> Result<Self, Error> {
        let mut head = [0u8; MAGIC.len() + 1];
        let mut filled = 0;
        while filled < head.len() {
            match input.read(&mut head[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(path)(e)),
            }
        }
        if filled == head.len() && head[..MAGIC.len()] == MAGIC {
            if head[MAGIC.len()] != FORMAT {
                return Err(format_error(path, FormatError::Version(head[MAGIC.len()])));
            }
            return Ok(Frames::File {
                input,
                path: path.to_path_buf(),
            });
        }
        let mut blob = head[..filled].to_vec();
        input.read_to_end(&mut blob).map_err(io_error(path))?;
        let body: SnapshotBody = codec::decode(&blob)?;
        Ok(Frames::Legacy(legacy_frames(body).into_iter()))
    }

    fn next(&mut self) -> Result<Option<Frame>, Error> {
        let (input, path) = match self {
            Frames::Legacy(frames) => return Ok(frames.next()),
            Frames::File { input, path } => (input, path.as_path()),
        };
        let mut len = [0u8; 4];
        let mut filled = 0;
        while filled < len.len() {
            match input.read(&mut len[filled..]) {
                Ok(0) if filled == 0 => return Ok(None),
                Ok(0) => return Err(format_error(path, FormatError::Truncated)),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(path)(e)),
            }
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(format_error(path, FormatError::FrameTooLarge(len)));
        }
        let mut bytes = vec![0u8; len];
        input.read_exact(&mut bytes).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                format_error(path, FormatError::Truncated)
            } else {
                io_error(path)(e)
            }
        })?;
        Ok(Some(codec::decode(&bytes)?))
    }

    fn path(&self) -> &Path {
        match self {
            Frames::File { path, .. } => path,
            Frames::Legacy(_) => Path::new("snapshot"),
        }
    }
}

/// The previous release's blob as the frames this release writes.
fn legacy_frames(body: SnapshotBody) -> Vec<Frame> {
    let mut frames = vec![Frame::Header {
        meta: None,
        commands_applied: body.commands_applied,
    }];
    let mut counts = Counts::default();
    let all = std::iter::once((tables::STATE.name().to_owned(), body.state)).chain(body.tables);
    for (name, rows) in all {
        counts.tables += 1;
        counts.rows += rows.len() as u64;
        frames.push(Frame::Table { name });
        frames.push(Frame::Rows(rows));
    }
    frames.push(Frame::End {
        tables: counts.tables,
        rows: counts.rows,
    });
    frames
}

/// Reads a snapshot file back into the previous release's blob (tests of the old format and the
/// conversion of one go through it).
#[cfg(test)]
pub(crate) fn to_legacy(input: impl Read, path: &Path) -> Result<SnapshotBody, Error> {
    let mut frames = Frames::open(input, path)?;
    let mut body = SnapshotBody {
        state: Rows::new(),
        commands_applied: 0,
        tables: Vec::new(),
    };
    while let Some(frame) = frames.next()? {
        match frame {
            Frame::Header {
                commands_applied, ..
            } => body.commands_applied = commands_applied,
            Frame::Table { name } => body.tables.push((name, Rows::new())),
            Frame::Rows(rows) => {
                if let Some((_, into)) = body.tables.last_mut() {
                    into.extend(rows);
                }
            }
            Frame::End { .. } => break,
        }
    }
    if let Some(at) = body
        .tables
        .iter()
        .position(|(name, _)| name == tables::STATE.name())
    {
        body.state = body.tables.remove(at).1;
    }
    Ok(body)
}

/// What an install read out of a snapshot file.
#[derive(Debug, Clone, Default)]
pub(crate) struct Installed {
    pub(crate) commands_applied: u64,
    pub(crate) counts: Counts,
}

/// Where the rows of the frames being read go.
enum Sink<'txn> {
    /// No `Table` frame yet.
    Nothing,
    /// A table this release does not have: its rows are skipped.
    Skip,
    Table(redb::Table<'txn, &'static [u8], &'static [u8]>),
}

/// Replaces every table of the partition with the rows of a snapshot file (either format), a
/// frame at a time, inside `txn`. Indexes the snapshot lacks are derived from the records.
pub(crate) fn install(
    txn: &WriteTransaction,
    input: impl Read,
    path: &Path,
) -> Result<Installed, Error> {
    let mut frames = Frames::open(input, path)?;
    let path = frames.path().to_path_buf();
    let malformed = |what| format_error(&path, FormatError::Malformed(what));
    let commands_applied = match frames.next()? {
        Some(Frame::Header {
            commands_applied, ..
        }) => commands_applied,
        Some(_) => return Err(malformed("it does not start with a header frame")),
        None => return Err(format_error(&path, FormatError::Truncated)),
    };
    for definition in tables::ALL {
        txn.delete_table(definition)?;
        txn.open_table(definition)?;
    }
    let mut seen: Vec<String> = Vec::new();
    let mut counts = Counts::default();
    let mut into = Sink::Nothing;
    loop {
        match frames.next()? {
            None => return Err(format_error(&path, FormatError::Truncated)),
            Some(Frame::Header { .. }) => return Err(malformed("a second header frame")),
            Some(Frame::Table { name }) => {
                counts.tables += 1;
                // The previous table is closed before the next one opens.
                drop(std::mem::replace(&mut into, Sink::Nothing));
                into = match tables::ALL.iter().find(|table| table.name() == name) {
                    Some(definition) => Sink::Table(txn.open_table(*definition)?),
                    None => Sink::Skip,
                };
                seen.push(name);
            }
            Some(Frame::Rows(rows)) => {
                counts.rows += rows.len() as u64;
                match &mut into {
                    Sink::Nothing => return Err(malformed("rows before any table frame")),
                    Sink::Skip => {}
                    Sink::Table(table) => {
                        for (key, value) in &rows {
                            table.insert(key.as_slice(), value.as_slice())?;
                        }
                    }
                }
            }
            Some(Frame::End { tables, rows }) => {
                if (tables, rows) != (counts.tables, counts.rows) {
                    let counts = FormatError::Counts {
                        tables: counts.tables,
                        rows: counts.rows,
                        want_tables: tables,
                        want_rows: rows,
                    };
                    return Err(format_error(&path, counts));
                }
                break;
            }
        }
    }
    drop(into);
    // Snapshots of older releases lack an index: derive the indexes from the records.
    let index_missing = tables::INDEXES
        .iter()
        .any(|index| !seen.iter().any(|name| name == index.name()));
    if index_missing {
        tables::rebuild_indexes(txn)?;
    }
    Ok(Installed {
        commands_applied,
        counts,
    })
}

/// Deletes its path when dropped, unless disarmed: a half-written or never-installed file does
/// not outlive the operation that made it.
#[derive(Debug)]
pub(crate) struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self(Some(path))
    }

    pub(crate) fn disarmed() -> Self {
        Self(None)
    }

    pub(crate) fn is_armed(&self) -> bool {
        self.0.is_some()
    }

    pub(crate) fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take()
            && let Err(e) = fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove an unused snapshot file");
        }
    }
}

/// A partition snapshot's bytes on disk: what openraft reads to send a snapshot, and writes
/// while receiving one. A received file that is dropped before it was installed is deleted.
#[derive(Debug)]
pub struct SnapshotFile {
    source: Source,
    path: PathBuf,
    remove: RemoveOnDrop,
}

/// Where a [`SnapshotFile`]'s bytes come from.
#[derive(Debug)]
enum Source {
    /// An open file.
    Open(tokio::fs::File),
    /// A file still being written on a blocking thread: the first read or seek waits for it,
    /// then seeks to `seek` if one was asked for meanwhile.
    Writing {
        done: oneshot::Receiver<Result<File, Error>>,
        seek: Option<io::SeekFrom>,
    },
    /// No bytes: a checkpoint's metadata, for a caller that reads only the metadata.
    Empty,
}

impl SnapshotFile {
    /// The snapshot's current snapshot file, for reading.
    pub(crate) fn current(file: File, path: PathBuf) -> Self {
        Self {
            source: Source::Open(tokio::fs::File::from_std(file)),
            path,
            remove: RemoveOnDrop::disarmed(),
        }
    }

    /// A new file to receive a snapshot into, deleted unless installed.
    pub(crate) fn incoming(file: File, path: PathBuf) -> Self {
        Self {
            source: Source::Open(tokio::fs::File::from_std(file)),
            remove: RemoveOnDrop::new(path.clone()),
            path,
        }
    }

    /// The file at `path`, once the writer that answers on `done` has finished it.
    pub(crate) fn writing(path: PathBuf, done: oneshot::Receiver<Result<File, Error>>) -> Self {
        Self {
            source: Source::Writing { done, seek: None },
            path,
            remove: RemoveOnDrop::disarmed(),
        }
    }

    /// No bytes (reads end at once): the metadata of a checkpoint, which has no file.
    pub(crate) fn empty(dir: &Path) -> Self {
        Self {
            source: Source::Empty,
            path: dir.to_path_buf(),
            remove: RemoveOnDrop::disarmed(),
        }
    }

    /// Where the bytes are (the snapshot directory for a checkpoint's empty file).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file for blocking use, once every write handed to it reached the file; the guard
    /// still deletes a received file unless it is disarmed.
    pub(crate) async fn into_parts(self) -> io::Result<(File, PathBuf, RemoveOnDrop)> {
        let Self {
            source,
            path,
            remove,
        } = self;
        let file = match source {
            Source::Open(mut file) => {
                file.flush().await?;
                file.into_std().await
            }
            Source::Writing { done, .. } => finished(done.await)?,
            Source::Empty => return Err(no_bytes()),
        };
        Ok((file, path, remove))
    }

    /// The open file, once a file being written is finished; `None` for a checkpoint.
    fn poll_open(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<&mut tokio::fs::File>>> {
        if let Source::Writing { done, seek } = &mut self.source {
            let file = match Pin::new(done).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(result) => finished(result)?,
            };
            let seek = seek.take();
            let mut file = tokio::fs::File::from_std(file);
            if let Some(position) = seek {
                Pin::new(&mut file).start_seek(position)?;
            }
            self.source = Source::Open(file);
        }
        Poll::Ready(Ok(match &mut self.source {
            Source::Open(file) => Some(file),
            _ => None,
        }))
    }
}

/// The file a snapshot writer answered with, or why there is none.
fn finished(result: Result<Result<File, Error>, oneshot::error::RecvError>) -> io::Result<File> {
    match result {
        Ok(Ok(file)) => Ok(file),
        Ok(Err(e)) => Err(io::Error::other(e)),
        Err(_) => Err(io::Error::other(
            "the snapshot writer stopped before the file was complete",
        )),
    }
}

fn no_bytes() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "a checkpoint has no snapshot file to read or write",
    )
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.poll_open(cx) {
            Poll::Ready(Ok(Some(file))) => Pin::new(file).poll_read(cx, buf),
            Poll::Ready(Ok(None)) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl SnapshotFile {
    /// The file to write to: only a received file is written, never one being built.
    fn writable(&mut self) -> io::Result<&mut tokio::fs::File> {
        match &mut self.source {
            Source::Open(file) => Ok(file),
            _ => Err(no_bytes()),
        }
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.writable()?).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.writable()?).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.writable()?).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        match &mut self.source {
            Source::Open(file) => Pin::new(file).start_seek(position),
            Source::Writing { seek, .. } => {
                *seek = Some(position);
                Ok(())
            }
            Source::Empty => Ok(()),
        }
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        match self.poll_open(cx) {
            Poll::Ready(Ok(Some(file))) => Pin::new(file).poll_complete(cx),
            Poll::Ready(Ok(None)) => Poll::Ready(Ok(0)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A partition's snapshot directory.
#[derive(Debug)]
pub(crate) struct SnapshotDir {
    path: PathBuf,
    /// Held while the current snapshot changes or is opened, so that a file is never deleted
    /// between reading its name and opening it. Taken after any redb write transaction.
    publish: Mutex<()>,
    /// Numbers the incoming files.
    incoming: AtomicU64,
}

impl SnapshotDir {
    /// The snapshot directory of the database at `db`: `snapshots/` next to `state.redb`, and
    /// `<stem>.snapshots/` next to a database of any other name, so stores that share a
    /// directory never share snapshot files.
    pub(crate) fn for_database(db: &Path) -> Self {
        let parent = db.parent().unwrap_or(Path::new("."));
        let path = match db.file_name().and_then(|name| name.to_str()) {
            Some("state.redb") | None => parent.join("snapshots"),
            Some(name) => {
                let stem = name.strip_suffix(".redb").unwrap_or(name);
                parent.join(format!("{stem}.snapshots"))
            }
        };
        Self {
            path,
            publish: Mutex::new(()),
            incoming: AtomicU64::new(0),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the directory and removes what a crash left behind: files being built or
    /// received, and snapshot files other than `current`.
    pub(crate) fn prepare(&self, current: Option<&str>) -> Result<(), Error> {
        fs::create_dir_all(&self.path).map_err(io_error(&self.path))?;
        self.remove_except(current);
        Ok(())
    }

    /// Removes every snapshot file of the directory but `keep` (all of them for a checkpoint,
    /// which has no file); files being built or received (which remove themselves when
    /// abandoned) are left alone.
    /// Failures are logged: a leftover costs disk until the next snapshot, nothing else.
    pub(crate) fn remove_others(&self, keep: Option<&str>) {
        self.remove_matching(|name| {
            Some(name) != keep && !name.starts_with(INCOMING_PREFIX) && !name.ends_with(TEMP_SUFFIX)
        });
    }

    fn remove_except(&self, keep: Option<&str>) {
        self.remove_matching(|name| Some(name) != keep);
    }

    fn remove_matching(&self, remove: impl Fn(&str) -> bool) {
        let entries = match fs::read_dir(&self.path) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(dir = %self.path.display(), error = %e, "cannot list the snapshot directory");
                return;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            if remove(name) {
                let path = entry.path();
                match fs::remove_file(&path) {
                    Ok(()) => tracing::debug!(path = %path.display(), "removed a snapshot file"),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot remove an old snapshot file")
                    }
                }
            }
        }
    }

    /// The file name of the snapshot `snapshot_id`: the id with anything but letters, digits,
    /// `-`, `_` and `.` replaced, so an id from a peer can name nothing outside the directory.
    pub(crate) fn file_name(snapshot_id: &str) -> String {
        let mut name: String = snapshot_id
            .chars()
            .take(128)
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if name.is_empty() || name.starts_with('.') || name.starts_with(INCOMING_PREFIX) {
            name.insert(0, '_');
        }
        name.push_str(SUFFIX);
        name
    }

    /// Where the snapshot file `name` is built before it is renamed into place.
    pub(crate) fn temp_path(&self, name: &str) -> PathBuf {
        let stem = name.strip_suffix(SUFFIX).unwrap_or(name);
        self.path.join(format!("{stem}{TEMP_SUFFIX}"))
    }

    /// A temporary path of its own for one writer of the snapshot file `name`: two writers of
    /// the same snapshot never share a file.
    pub(crate) fn unique_temp_path(&self, name: &str) -> PathBuf {
        let n = self.incoming.fetch_add(1, Ordering::Relaxed);
        let stem = name.strip_suffix(SUFFIX).unwrap_or(name);
        self.path.join(format!("{stem}-w{n}{TEMP_SUFFIX}"))
    }

    pub(crate) fn file_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// A new file to receive a snapshot into.
    pub(crate) fn incoming_file(&self) -> Result<SnapshotFile, Error> {
        let n = self.incoming.fetch_add(1, Ordering::Relaxed);
        let path = self.path.join(format!("{INCOMING_PREFIX}{n}{SUFFIX}"));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error(&path))?;
        Ok(SnapshotFile::incoming(file, path))
    }

    /// Moves a complete, synced file to its name in the directory, durably (the directory is
    /// synced too).
    pub(crate) fn rename_into_place(&self, from: &Path, name: &str) -> Result<PathBuf, Error> {
        let to = self.file_path(name);
        fs::rename(from, &to).map_err(io_error(&to))?;
        self.sync()?;
        Ok(to)
    }

    /// Copies a snapshot file from elsewhere into the directory (synced), to be renamed into
    /// place once installed.
    pub(crate) fn copy_in(
        &self,
        from: &mut File,
        source: &Path,
    ) -> Result<(File, PathBuf, RemoveOnDrop), Error> {
        use std::io::Seek;
        let n = self.incoming.fetch_add(1, Ordering::Relaxed);
        let path = self.path.join(format!("{INCOMING_PREFIX}{n}{SUFFIX}"));
        let guard = RemoveOnDrop::new(path.clone());
        let mut copy = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error(&path))?;
        from.seek(io::SeekFrom::Start(0))
            .map_err(io_error(source))?;
        io::copy(from, &mut copy).map_err(io_error(&path))?;
        copy.sync_all().map_err(io_error(&path))?;
        Ok((copy, path, guard))
    }

    /// Syncs the directory, so renames and new files in it survive a crash.
    pub(crate) fn sync(&self) -> Result<(), Error> {
        File::open(&self.path)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error(&self.path))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ()> {
        self.publish.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
