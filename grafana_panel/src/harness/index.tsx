/**
 * Standalone page: the real RootCausePanel under Grafana's theme, fed by POST /query on this origin.
 * URL: /ui/?traceId=<hex>&theme=light|dark
 */
import { createTheme, ThemeContext } from '@grafana/data';
import React, { useCallback, useEffect, useMemo, useState } from 'react';
import { createRoot } from 'react-dom/client';

import { App, readUrl, UrlState, writeUrl } from './App';

const Root: React.FC = () => {
  const [url, setUrl] = useState<UrlState>(() => readUrl(window.location.search));
  const theme = useMemo(() => createTheme({ colors: { mode: url.theme } }), [url.theme]);

  useEffect(() => {
    const onPop = () => setUrl(readUrl(window.location.search));
    window.addEventListener('popstate', onPop);
    return () => window.removeEventListener('popstate', onPop);
  }, []);
  useEffect(() => {
    document.body.style.background = theme.colors.background.canvas;
    document.body.style.color = theme.colors.text.primary;
    document.documentElement.style.colorScheme = theme.colors.mode;
  }, [theme]);

  const navigate = useCallback((next: UrlState) => {
    window.history.pushState(null, '', writeUrl(window.location.pathname, next));
    setUrl(next);
  }, []);

  return (
    <ThemeContext.Provider value={theme}>
      <App url={url} navigate={navigate} />
    </ThemeContext.Provider>
  );
};

createRoot(document.getElementById('root') as HTMLElement).render(<Root />);
