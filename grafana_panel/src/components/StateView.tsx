/** Everything that is not an explanation: loading, no trace selected, unknown trace, learning, normal, errors. */
import { css, keyframes } from '@emotion/css';
import { GrafanaTheme2 } from '@grafana/data';
import { useStyles2 } from '@grafana/ui';
import React from 'react';

import { ViewKind } from '../state';

interface Props {
  kind: Exclude<ViewKind, 'ok' | 'not_outlier'>;
  message: string;
  modelTraces?: number | null;
}

const TEXT: Record<Props['kind'], { title: string; body: string }> = {
  loading: { title: 'Explaining this trace…', body: '' },
  no_trace: {
    title: 'No trace selected',
    body: 'Open a slow trace from Tempo (the "Why slow?" link) or set the traceId variable of this dashboard.',
  },
  unknown_trace: {
    title: 'Trace not found',
    body: 'whyslow has not received this trace, or it has been removed by retention. Check the trace id and that the collector exports to whyslow.',
  },
  learning: {
    title: 'Still learning what normal looks like',
    body: 'whyslow needs more normal traffic for this entry point before it can explain outliers.',
  },
  no_data: { title: 'Not whyslow data', body: '' },
  error: { title: 'Could not explain this trace', body: '' },
};

export const StateView: React.FC<Props> = ({ kind, message, modelTraces }) => {
  const styles = useStyles2(getStyles);
  const text = TEXT[kind];
  return (
    <div className={styles.box} data-testid="whyslow-state" data-state={kind} role={kind === 'error' ? 'alert' : 'status'}>
      <Glyph kind={kind} />
      <div className={kind === 'error' ? styles.titleError : styles.title}>{text.title}</div>
      {text.body && <div className={styles.body}>{text.body}</div>}
      {kind === 'learning' && modelTraces !== null && modelTraces !== undefined && (
        <div className={styles.body}>Traces learned from so far: {modelTraces.toLocaleString('en-US')}</div>
      )}
      {message && (
        <div className={kind === 'error' ? styles.errorMessage : styles.body} data-testid="whyslow-state-message">
          {message}
        </div>
      )}
    </div>
  );
};

const Glyph: React.FC<{ kind: Props['kind'] }> = ({ kind }) => {
  const styles = useStyles2(getStyles);
  if (kind === 'loading') {
    return <div className={styles.spinner} aria-label="loading" />;
  }
  const symbol = kind === 'error' ? '!' : kind === 'learning' ? '…' : kind === 'no_trace' ? '?' : '∅';
  return (
    <div className={kind === 'error' ? styles.glyphError : styles.glyph} aria-hidden>
      {symbol}
    </div>
  );
};

const spin = keyframes({ to: { transform: 'rotate(360deg)' } });

const getStyles = (theme: GrafanaTheme2) => {
  const glyph = {
    width: 40,
    height: 40,
    borderRadius: '50%',
    display: 'flex',
    alignItems: 'center',
    justifyContent: 'center',
    fontSize: 22,
    fontWeight: theme.typography.fontWeightBold,
    border: `2px solid ${theme.colors.border.strong}`,
    color: theme.colors.text.secondary,
  };
  return {
    box: css({
      height: '100%',
      display: 'flex',
      flexDirection: 'column',
      alignItems: 'center',
      justifyContent: 'center',
      gap: theme.spacing(1),
      textAlign: 'center',
      padding: theme.spacing(2),
    }),
    title: css({ fontSize: theme.typography.h4.fontSize, color: theme.colors.text.primary }),
    titleError: css({ fontSize: theme.typography.h4.fontSize, color: theme.colors.error.text }),
    body: css({ maxWidth: 520, color: theme.colors.text.secondary }),
    errorMessage: css({
      maxWidth: 620,
      padding: theme.spacing(1, 1.5),
      borderRadius: theme.shape.radius.default,
      background: theme.colors.error.transparent,
      color: theme.colors.text.primary,
      fontFamily: theme.typography.fontFamilyMonospace,
      fontSize: theme.typography.bodySmall.fontSize,
      whiteSpace: 'pre-wrap',
      wordBreak: 'break-word',
    }),
    glyph: css(glyph),
    glyphError: css({ ...glyph, borderColor: theme.colors.error.border, color: theme.colors.error.text }),
    spinner: css({
      width: 32,
      height: 32,
      borderRadius: '50%',
      border: `3px solid ${theme.colors.border.medium}`,
      borderTopColor: theme.colors.primary.main,
      animation: `${spin} 0.9s linear infinite`,
    }),
  };
};
